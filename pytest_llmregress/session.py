"""The per-process state of a pytest-llmregress session, kept in ``config.stash``.

``plugin.py`` holds the hooks; every decision they need is a method here: which cases this
process starts ahead of pytest's loop, how results are gathered and written, and what the
verdict is. Under xdist each worker has its own ``LLMRegressSession``, connected to the one
runner process the controller started, and only the controller gathers results and decides.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmregress import __version__
from pytest_llmregress.core.masking import mask_url
from pytest_llmregress.providers.registry import (
    Endpoints,
    ModelRef,
    ModelSpecError,
    endpoints_from_environment,
    local_server_endpoints,
    parse_model,
)
from pytest_llmregress.settings import RunnerSettings, Settings, format_value
from pytest_llmregress.verdict.gate import Verdict, decide
from pytest_llmregress.verdict.results import CaseResult, ResultsJournal

if TYPE_CHECKING:
    from pytest_llmregress.cases.golden import GoldenCase
    from pytest_llmregress.collect.items import GoldenItem
    from pytest_llmregress.engine.runner import CaseRun, SystemPrompt
    from pytest_llmregress.engine.runner_process import RunnerClient, RunnerProcess
    from pytest_llmregress.testing.server import LocalProviderServer

SESSION_KEY = pytest.StashKey["LLMRegressSession"]()
WORKER_SERVER_URL = "llmregress_server_url"
WORKER_RUNNER = "llmregress_runner"  # the runner process's address, for xdist workers
WORKER_DIST = "llmregress_dist"  # the controller's --dist mode (a worker's option says "no")


class LLMRegressWarning(pytest.PytestWarning):
    """A warning from pytest-llmregress (model choice, configuration)."""


def get_session(config: pytest.Config) -> LLMRegressSession:
    return config.stash[SESSION_KEY]


def pyproject_path(config: pytest.Config) -> Path | None:
    """The pyproject.toml pytest reads its configuration from, if it reads one."""
    if config.inipath is not None and config.inipath.name == "pyproject.toml":
        return config.inipath
    return None


def find_session(config: pytest.Config) -> LLMRegressSession | None:
    """The session, or None where this plugin's ``pytest_configure`` did not make one."""
    return config.stash.get(SESSION_KEY, None)


def golden_nodeid_matcher(patterns: Sequence[str]) -> Any:
    """A predicate telling golden node ids (``path::case``) from others, by file pattern."""

    def is_golden(nodeid: str) -> bool:
        path, sep, rest = nodeid.partition("::")
        return bool(sep) and "::" not in rest and any(fnmatch.fnmatch(path, p) for p in patterns)

    return is_golden


def golden_units(nodeids: Sequence[str], is_golden: Any, worker_count: int) -> dict[str, str]:
    """Map each golden node id to its xdist work unit: one block of consecutive cases a worker.

    A worker starts a whole unit at once, so one unit per worker keeps every worker's calls
    pipelined from its first case to its last (candidate and judge calls overlapping). Smaller
    units would let a worker see its next unit only when the current one ends. The scheduler
    and the workers compute this from the same collection, so they agree on every unit.
    """
    golden = [nodeid for nodeid in nodeids if is_golden(nodeid)]
    size = max(1, -(-len(golden) // max(1, worker_count)))
    return {nodeid: f"llmregress-unit-{index // size}" for index, nodeid in enumerate(golden)}


def check_dist_mode(config: pytest.Config) -> None:
    """Refuse ``--dist each`` with a model: it would pay for every model call once per worker.

    Every other mode runs each case once: ``load`` through work units (``scheduler.py``), the
    others through the runner process, which runs a case once whoever asks for it.
    """
    if config.getoption("dist", "no") == "each":
        raise pytest.UsageError(
            "pytest-llmregress: --dist each runs every test on every worker, so every golden "
            "case and llm fixture call would be paid once per worker. Use -n N with --dist "
            "load (the default), loadfile, loadscope, loadgroup or worksteal; each runs every "
            "case exactly once."
        )


class LLMRegressSession:
    """Settings, the runner, the local server and the results of one pytest process."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.is_worker = hasattr(config, "workerinput")
        self.server: LocalProviderServer | None = None
        self.runner: RunnerClient | None = None
        self.runner_process: RunnerProcess | None = None
        self._system_for: Any = None
        self.candidate: ModelRef | None = None
        self.judge: ModelRef | None = None
        self.endpoints: Endpoints | None = None
        self.results: list[CaseResult] = []
        self.compare_results: list[CaseResult] = []
        self._own_results: dict[str, CaseResult] = {}  # the compare model's, paired by case
        self.compare: ModelRef | None = None
        self.fallbacks: tuple[ModelRef, ...] = ()
        self.comparison: Any = None
        self.comparison_error: str | None = None
        self.record_lines: list[str] = []
        self.record_failed = False
        self.expected: set[str] = set()  # golden node ids this run should produce results for
        self.resumed: dict[str, CaseRun] = {}  # node id -> (result, compare model's result)
        self.journal: ResultsJournal | None = None
        self.golden_failures = 0  # failed reports that are golden verdicts, not broken tests
        self.broken_golden_files: set[str] = set()  # golden files that failed to load
        self.other_collect_errors = 0
        self.started_at = dt.datetime.now(dt.UTC)
        self._verdict: Verdict | None = None
        self.lifecycle_findings: list[Any] = []  # LifecycleFinding: warnings, said at the end
        self.lifecycle_source = ""
        self.preflight_warnings: list[str] = []
        self.damaged_state: list[str] = []  # healed or skipped: see _note_last_words
        self.traffic_lines: list[str] = []  # retries, timeouts, back-off: _note_last_words
        self.cache_use: str | None = None  # the cache's hits and misses: _note_last_words
        self._prompts_metadata: dict[str, Any] = {}  # prompt_model, prompts: _prompt_resolver
        self.key_problem: str | None = None  # API keys that models of this run need but lack
        self.skipped_golden = 0  # golden cases skipped for want of a model
        self._submitted_groups: set[str] = set()
        self._groups: dict[str, list[GoldenItem]] | None = None
        self._is_golden = golden_nodeid_matcher(settings.golden_files)

    # -- start-up ----------------------------------------------------------------------------

    def start(self, *, run_cases: bool) -> None:
        """Resolve models and endpoints, check keys, start the server and the runner.

        ``run_cases`` is False on an xdist controller, whose workers run the cases.
        """
        settings = self.settings
        model_config = self._model_config()
        judge_model = settings.judge_model
        if judge_model is None and "judge" in model_config.roles:
            judge_model = "@judge"  # the config's judge role is the default judge
        try:
            model = model_config.resolve(settings.model) if settings.model else None
            judge_model = model_config.resolve(judge_model) if judge_model else None
            self.candidate = parse_model(model) if model else None
            self.judge = parse_model(judge_model) if judge_model else None
            if settings.compare_model and self.candidate is not None:
                self.compare = parse_model(model_config.resolve(settings.compare_model))
            if settings.fallback and self.candidate is not None:
                self.fallbacks = self._fallback_chain(model_config, settings.model or "")
        except (ModelSpecError, ValueError) as exc:
            raise pytest.UsageError(f"pytest-llmregress: {exc}") from None
        if settings.compare_model and settings.baseline:
            raise pytest.UsageError(
                "pytest-llmregress: --llm-baseline and --llm-compare-model both name the baseline;"
                " give one"
            )
        if self.candidate is not None and not self.is_worker:
            check_dist_mode(self.config)
        self._check_lifecycle(model_config)
        self.endpoints = self._endpoints()
        if not self._models_by_role():
            return
        self.key_problem = self._key_problem()
        if (
            self.candidate is not None
            and self.judge is not None
            and self.judge.family == self.candidate.family
            and not self.is_worker
        ):
            self._warn_about_setting(
                "judge_model",
                f"the judge {self.judge} is of the same family ({self.judge.family}) as the "
                f"candidate {self.candidate}: LLM judges favour their own family's outputs "
                f"(self-preference bias); prefer a judge from another family",
            )
        if self.candidate is not None and self.settings.resume:
            self.resumed = self._load_resumed(self.settings.resume)
        self._check_baseline()
        if self.config.option.collectonly or self.key_problem:
            # Nothing will call a model: start no process, import no SDK. A missing key stops
            # the session only if a selected test needs a model (``before_run``).
            return
        from pytest_llmregress.engine.runner_process import (
            RunnerAddress,
            RunnerClient,
            RunnerProcess,
        )

        self._system_for = self._prompt_resolver(model_config)  # bad prompt files stop us here
        if self.is_worker:
            address = self.config.workerinput.get(WORKER_RUNNER)  # type: ignore[attr-defined]
            if address is None:
                return
            address = RunnerAddress(*address)
        else:  # last: nothing after this can fail before the session owns the process
            self.runner_process = RunnerProcess(self._runner_config())
            address = self.runner_process.address
        if not run_cases:
            return  # the xdist controller: its workers run the cases
        if self.report_path and self.candidate is not None:
            name = self.config.workerinput["workerid"] if self.is_worker else "main"  # type: ignore[attr-defined]
            self.journal = ResultsJournal(self.report_path, name, self.metadata())
        self.runner = RunnerClient(
            address, on_result=self.journal.add if self.journal is not None else None
        )

    def _key_problem(self) -> str | None:
        """Which API key each model of the run lacks, or None when every key is there."""
        assert self.endpoints is not None
        needs: dict[str, list[str]] = {}
        for role, ref in self._models_by_role():
            for variable in self.endpoints.missing_keys([ref]):
                needs.setdefault(variable, []).append(f"{ref} ({role})")
        if not needs:
            return None
        listed = "; ".join(
            f"{var} is not set, and {', '.join(m)} needs it" for var, m in needs.items()
        )
        return (
            f"pytest-llmregress: {listed}. Set it in the environment, or run against the local "
            f"provider server with --llm-serve=SCENARIO."
        )

    def _runner_config(self) -> dict[str, Any]:
        """What the runner process needs: models, endpoints (with keys), its settings, cache."""
        from pytest_llmregress.engine.runner_process import runner_config

        settings = self.settings
        assert self.endpoints is not None
        return runner_config(
            endpoints=self.endpoints,
            settings=RunnerSettings.of(settings),
            candidate=self.candidate,
            judge=self.judge,
            compare=self.compare,
            fallbacks=self.fallbacks,
            preflight=settings.preflight != "off" and settings.cache != "replay",
            cache_dir=self._cache_dir(),
        )

    def _prompt_resolver(self, model_config: Any) -> Any:
        """How a case gets its system prompt for a model: literal, or its prompt for the model."""
        from pytest_llmregress.prompts.library import (
            PromptError,
            PromptLibrary,
            check_prompt_model,
            prompts_metadata,
            resolve_system,
        )

        directory = self._rooted(self.settings.prompts_dir)
        library = None  # without the folder, a case with a `prompt` ends in an error saying so
        if directory.is_dir():
            try:
                library = PromptLibrary.load(
                    directory,
                    display_dir=self.settings.prompts_dir,
                    lifecycle=model_config.lifecycle(),
                )
            except PromptError as exc:
                raise pytest.UsageError(f"pytest-llmregress: prompt files:\n{exc}") from None
        forced = self.settings.prompt_model
        candidate = self.candidate
        if forced:
            try:  # a typo would silently give every task its default
                check_prompt_model(library, forced, source=self.settings.prompts_dir)
            except PromptError as exc:
                raise pytest.UsageError(f"pytest-llmregress: --llm-prompt-model {exc}") from None
        prompts_for = forced or (candidate.model if candidate else None)
        self._prompts_metadata = prompts_metadata(library, prompts_for, prompt_model=forced)

        def system_for(case: Any, model: ModelRef) -> str | None:
            target = forced if forced and model == candidate else model.model
            return resolve_system(case, library, target)[0]

        return system_for

    @staticmethod
    def _fallback_chain(model_config: Any, model: str) -> tuple[ModelRef, ...]:
        """The fallbacks of the candidate's role: ``@role``, or the role whose id it is."""
        if model.startswith("@"):
            role = model_config.role(model[1:])
        else:
            roles = [r for r in model_config.roles.values() if r.id == model]
            if not roles:
                raise ValueError(
                    f"--llm-fallback: no role in the model config has {model!r} as its id; add "
                    f"fallbacks to a role in [tool.llmregress.models] and use --llm-model=@ROLE"
                )
            role = roles[0]
        if not role.fallbacks:
            raise ValueError(f"--llm-fallback: the role {role.name!r} has no fallbacks")
        return tuple(parse_model(f) for f in role.fallbacks)

    def _model_config(self) -> Any:
        from pytest_llmregress.models import (
            CONFIG_FILENAME,
            ModelConfig,
            ModelConfigError,
            load_model_config,
        )

        # The model config sits beside pytest's own: llmregress.toml in the rootdir, else the
        # pyproject.toml pytest reads. A pyproject pytest does not read is none of our business.
        dedicated = self.config.rootpath / CONFIG_FILENAME
        path = dedicated if dedicated.is_file() else pyproject_path(self.config)
        if path is None:
            return ModelConfig()
        try:
            return load_model_config(path=path)
        except ModelConfigError as exc:
            raise pytest.UsageError(f"pytest-llmregress: {exc}") from None

    def _check_lifecycle(self, model_config: Any) -> None:
        """Retired models stop the run before any call; aliases and near retirements warn.

        With ``--llm-fallback`` a retired model of the chain (the candidate or a fallback) only
        warns while another model of the chain has no error: the chain answers with that one.
        When no model of the chain is left, the error names each of them. The judge and the
        compare model answer alone: their errors always stop the run.
        """
        if self.candidate is None:
            return
        data = model_config.lifecycle()
        self.lifecycle_source = data.describe()
        findings = []
        chain_roles = ("candidate", "fallback")
        live: list[str] = []  # models of the fallback chain with no error
        for role, ref in self._models_by_role():
            found = data.check(
                ref.model,
                role,
                warning_days=self.settings.retirement_warning_days,
                require_pinned=self.settings.require_pinned,
            )
            findings += found
            if role in chain_roles and all(f.level != "error" for f in found):
                live.append(str(ref))
        chain_note = ""
        if self.fallbacks and live:
            # Only retirement is lifted: a chain does not answer --llm-require-pinned.
            answers = f"; --llm-fallback: the chain answers with {', '.join(live)}"
            findings = [
                replace(f, level="warning", message=f.message + answers)
                if f.level == "error" and f.code == "retired" and f.role in chain_roles
                else f
                for f in findings
            ]
        elif self.fallbacks:
            members = ", ".join(str(ref) for ref in (self.candidate, *self.fallbacks))
            chain_note = f"\n  --llm-fallback: no model of the chain can answer ({members})"
        errors = [f for f in findings if f.level == "error"]
        if errors:
            listed = "\n  ".join(f.message for f in errors)
            hint = " (--llm-require-pinned is set)" if self.settings.require_pinned else ""
            raise pytest.UsageError(
                f"pytest-llmregress: no case was run{hint}:\n  {listed}{chain_note}\n"
                f"({self.lifecycle_source})"
            )
        # Said once, in the summary, where the snapshot each alias answered as is known.
        self.lifecycle_findings = findings

    def _models_by_role(self) -> list[tuple[str, ModelRef]]:
        """Every model of the run with its role: candidate, judge, compare, fallback."""
        roles = [("candidate", self.candidate), ("judge", self.judge), ("compare", self.compare)]
        roles += [("fallback", ref) for ref in self.fallbacks]
        return [(role, ref) for role, ref in roles if ref is not None]

    def _warn_about_setting(self, option: str, message: str) -> None:
        """A warning located where the user set ``option`` (their config), not in our code."""
        source = self.settings.sources.get(option, "default")
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

    def model_warnings(self) -> list[str]:
        """Lifecycle warnings; an alias says which snapshot it answered as in this run."""
        answered = self.resolved_models()
        messages = []
        roles = self._models_by_role()
        for finding in self.lifecycle_findings:
            message = finding.message
            refs = [ref for role, ref in roles if role == finding.role]
            ref = next((r for r in refs if r.model == finding.model_id), refs[0] if refs else None)
            versions = answered.get(str(ref), {}) if ref is not None else {}
            snapshots = sorted({name.split(" (")[0] for name in versions})
            if finding.code == "alias" and snapshots:
                message = (
                    f"{finding.role}: alias {finding.model_id} answered as "
                    f"{', '.join(snapshots)} in this run; pin a dated snapshot"
                )
            messages.append(message)
        return [*messages, *self.preflight_warnings]

    @property
    def report_path(self) -> Path | None:
        """The results file: ``--llm-report``, else the file being resumed."""
        chosen = self.settings.report or self.settings.resume
        if not chosen:
            return None
        path = Path(chosen)
        return path if path.is_absolute() else self.config.rootpath / path

    def _cache_dir(self) -> Path | None:
        """The response cache's folder, or None when nothing is cached."""
        settings = self.settings
        if settings.cache == "off" and settings.judge_cache == "off":
            return None
        return self._rooted(settings.cache_dir)

    def _load_resumed(self, path: str) -> dict[str, CaseRun]:
        """Scored cases of an earlier run, by node id; its errors run again.

        With ``--llm-compare-model`` a case is taken only with the same compare model's scored
        result on it, so every case stays paired; the others run again, both models.
        """
        from pytest_llmregress.verdict.results import read_results

        target = Path(path) if Path(path).is_absolute() else self.config.rootpath / path
        try:
            earlier, skipped = read_results(target)
        except FileNotFoundError:
            return {}  # nothing to resume: this run starts the file
        except (OSError, ValueError) as exc:
            raise pytest.UsageError(f"pytest-llmregress: --llm-resume: {exc}") from None
        self.damaged_state += [
            f"resume: {lines.describe()}; {'their cases' if len(lines.lines) > 1 else 'its case'}"
            f" ran again"
            for lines in skipped
        ]
        if self.compare is None:
            return {case.nodeid: (case, None) for case in earlier.cases if case.outcome != "error"}
        if earlier.metadata.get("compare") != str(self.compare):
            return {}
        compared = {case.nodeid: case for case in earlier.compare_cases}
        return {
            case.nodeid: (case, compared[case.nodeid])
            for case in earlier.cases
            if case.outcome != "error"
            and case.nodeid in compared
            and compared[case.nodeid].outcome != "error"
        }

    def before_run(self, session: pytest.Session) -> None:
        """Just before the first test runs: the preflight verdict, and golden collect errors.

        The runner process checked each distinct model once while pytest collected (instead
        of N identical 404s later); here the session waits for its answer.
        """
        from pytest_llmregress.engine.runner_process import RunnerError

        distributing = session.config.pluginmanager.has_plugin("dsession")
        calls = not session.config.option.collectonly and self._calls_models(session)
        if self.key_problem and not distributing and calls:
            raise pytest.UsageError(self.key_problem)  # (under xdist: ``expect``)
        if (
            self.runner_process is not None
            and not self.is_worker
            and not self._calls_models(session)
        ):
            self.close_runner()  # e.g. unit tests only: no wait for a runner nobody needs
        if self.runner_process is not None:
            try:
                problems = self.runner_process.preflight_problems()
            except RunnerError as exc:
                pytest.exit(f"pytest-llmregress: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
            problems = dict(problems)
            chain = [str(ref) for ref in (self.candidate, *self.fallbacks)]
            if self.fallbacks and not all(ref in problems for ref in chain):
                # The chain answers as long as one of its models does: the rest only warn.
                self.preflight_warnings = [problems.pop(ref) for ref in chain if ref in problems]
            if problems:
                listed = "\n  ".join(problems.values())
                raise pytest.UsageError(
                    f"pytest-llmregress: preflight: no case was run, because these models are not "
                    f"available:\n  {listed}\n(--llm-preflight=off skips this check)"
                )
        if self.broken_golden_files and not self.other_collect_errors:
            # A malformed golden file fails the session, but the other files still run.
            session.config.option.continue_on_collection_errors = True

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

    def _endpoints(self) -> Endpoints:
        if self.is_worker:
            url = self.config.workerinput.get(WORKER_SERVER_URL)  # type: ignore[attr-defined]
            if url:
                return local_server_endpoints(url)
        elif self.settings.serve:
            from pytest_llmregress.testing.scenario import ScenarioError
            from pytest_llmregress.testing.server import LocalProviderServer

            try:
                self.server = LocalProviderServer(self._serve_path()).start()
            except ScenarioError as exc:
                raise pytest.UsageError(f"pytest-llmregress: --llm-serve: {exc}") from None
            return local_server_endpoints(self.server.url)
        return endpoints_from_environment(
            self.settings.anthropic_base_url, self.settings.openai_base_url
        )

    def _serve_path(self) -> Path:
        path = Path(self.settings.serve or "")
        if not path.is_absolute() and not path.exists():
            path = self.config.rootpath / path
        if not path.exists():
            raise pytest.UsageError(f"pytest-llmregress: --llm-serve: no such file: {path}")
        return path

    def skip_reason(self) -> str:
        return (
            "no model under test: run with --llm-model=ID (or set llm_model in the ini file / "
            "model in [tool.llmregress])"
        )

    def configure_worker(self, workerinput: dict[str, Any]) -> None:
        """Called on the controller for each xdist worker it starts."""
        if self.server is not None:
            workerinput[WORKER_SERVER_URL] = self.server.url
        if self.runner_process is not None:
            address = self.runner_process.address
            workerinput[WORKER_RUNNER] = [address.socket_path, address.log_path]
        workerinput[WORKER_DIST] = self.config.getoption("dist", "no")

    def is_golden_path(self, path: Path) -> bool:
        """Whether a file is collected as golden cases (``golden_files`` patterns)."""
        try:
            relative = path.relative_to(self.config.rootpath).as_posix()
        except ValueError:
            relative = path.as_posix()
        return any(fnmatch.fnmatch(relative, pattern) for pattern in self.settings.golden_files)

    def header_lines(self) -> list[str]:
        if self.candidate is None:
            if self.judge is None:
                return []  # a project that does not use the plugin sees nothing of it
            return [f"llmregress: judge {self.judge}; no --llm-model: golden cases will be skipped"]
        assert self.endpoints is not None
        settings = self.settings
        where = self.endpoints.describe(self.candidate.provider)
        judge = f"judge {self.judge}" if self.judge else "no judge"
        served = f", local server {settings.serve}" if settings.serve else ""
        explicit = self.settings.explicit()
        for name in ("anthropic_base_url", "openai_base_url"):
            if explicit.get(name):  # the line is pasted into CI logs and issues
                explicit[name] = mask_url(explicit[name])
        rerun = " ".join(
            f"--llm-{name.replace('_', '-')}" + ("" if value is True else f"={format_value(value)}")
            for name, value in explicit.items()
            if name not in ("golden_files",)
        )
        lines = [
            f"llmregress: model {self.candidate} at {where}, {judge}, min pass rate "
            f"{settings.min_pass_rate:.0%}, concurrency {settings.concurrency}{served}",
            self._sampling_line(),
            f"llmregress: rerun with {rerun}",
        ]
        if self.lifecycle_findings:
            count = len(self.lifecycle_findings)
            lines.append(
                f"llmregress: {count} model warning{'s' if count > 1 else ''} "
                f"({self.lifecycle_source}), listed in the summary"
            )
        return lines

    def _sampling_line(self) -> str:
        """What each model samples with: sampling that is stated, not the server's accident."""
        from pytest_llmregress.engine.runner import judge_request_params, with_params

        settings = self.settings
        own = with_params(settings.params, {})
        models = ", ".join(str(ref) for ref in (self.candidate, self.compare) if ref)
        line = f"llmregress: sampling: {models} "
        if own:
            line += f"{format_value(own)} (--llm-params), under a case's own params"
        else:
            line += "at the server's defaults unless a case sets params (--llm-params)"
        if self.judge is not None:
            judge = judge_request_params(settings.judge_params)
            line += f"; judge {self.judge} {format_value(judge) or 'at its defaults'}"
        return line

    def param_problems(self, case: GoldenCase) -> list[tuple[str, str]]:
        """Why a golden case's ``params`` cannot be sent to a model that runs it (``top_k`` to
        OpenAI's API): refused when its file is loaded, not once per case at run time."""
        from pytest_llmregress.providers.registry import OPENAI_EXTRA_PARAMS

        runs = [ref for ref in (self.candidate, self.compare, *self.fallbacks) if ref]
        problems = []
        for name in case.params:
            if name not in OPENAI_EXTRA_PARAMS or name in self.settings.openai_extra_params:
                continue
            for ref in runs:
                if ref.provider == "openai":
                    problems.append(
                        (
                            name,
                            f"the OpenAI Chat Completions API takes no {name} ({ref} runs this "
                            f"case): remove it, or send it to a compatible server that takes "
                            f"it (vLLM, llama.cpp) with --llm-openai-extra-params={name}",
                        )
                    )
                    break
        return problems

    # -- running -----------------------------------------------------------------------------

    def scope_of(self, nodeids: Sequence[str], worker_count: int) -> dict[str, str]:
        """The xdist work unit of each golden node id (see ``golden_units``)."""
        return golden_units(nodeids, self._is_golden, worker_count)

    def _group_items(self, item: GoldenItem) -> list[GoldenItem]:
        """The cases to start together with ``item``.

        Without xdist this process runs all of its golden items, so all start at once. Under
        ``--dist load`` a worker runs whole work units (see ``scheduler.py``), so it starts
        ``item``'s unit. Under every other mode a worker cannot know which cases it will be
        given (``loadfile``, ``loadscope``, ``loadgroup``, ``worksteal``), so it starts them
        all: the runner process runs each case once, whoever asks (``runner_process.CaseBoard``).
        ``--dist each`` is refused at start-up (``check_dist_mode``).
        """
        from pytest_llmregress.collect.items import GoldenItem

        if self._groups is None:
            golden = [i for i in item.session.items if isinstance(i, GoldenItem)]
            workerinput = getattr(self.config, "workerinput", {})
            if workerinput.get(WORKER_DIST) == "load":
                count = int(workerinput["workercount"])
                scopes = self.scope_of([i.nodeid for i in item.session.items], count)
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
        resumed = self.resumed.get(item.nodeid)
        if resumed is not None:
            if self.journal is not None:
                self.journal.add(*resumed)
            return resumed
        try:
            self.runner.submit(
                (
                    (member.nodeid, member.case)
                    for member in self._group_items(item)
                    if member.nodeid not in self.resumed
                ),
                self._systems,
            )
            return self.runner.result(item.nodeid, item.case, self._systems)
        except RunnerError as exc:
            return case_error(item.nodeid, item.case, str(exc), "runner"), None

    def _systems(self, case: Any) -> dict[str, SystemPrompt]:
        """The case's system prompt for each model that answers it, or why there is none."""
        systems: dict[str, SystemPrompt] = {}
        for model in (self.candidate, self.compare, *self.fallbacks):
            if model is None:
                continue
            try:
                systems[str(model)] = (self._system_for(case, model), None)
            except Exception as error:  # a prompt that cannot be resolved for this model
                systems[str(model)] = (None, str(error))
        return systems

    def expect(self, nodeids: Sequence[str]) -> None:
        """Record the golden cases this run should produce (the controller's denominator).

        On an xdist controller this is the first moment it knows that golden cases will run,
        so a missing API key stops the session here.
        """
        self.expected = {nodeid for nodeid in nodeids if self._is_golden(nodeid)}
        collecting_only = self.config.option.collectonly
        if (
            self.key_problem
            and self.candidate is not None
            and self.expected
            and not collecting_only
        ):
            raise pytest.UsageError(self.key_problem)

    def missing(self) -> list[str]:
        """Golden cases that were collected but have no result (interrupted, worker died)."""
        if self.candidate is None:
            return []
        done = {result.nodeid for result in self.results}
        return sorted(self.expected - done)

    def judge_sync(
        self, output: str, reference: str, *, threshold: float = 0.85, task: str = ""
    ) -> Any:
        """Score ``output`` against ``reference`` with the judge (the ``llm_judge`` fixture)."""
        if self.runner is None:
            raise RuntimeError("the judge runs in the processes that run tests")
        return self.runner.judge_sync(
            task=task, reference=reference, output=output, threshold=threshold
        )

    # -- gathering (controller) --------------------------------------------------------------

    def annotate_report(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Attach a golden item's result to its call report, to travel to the controller."""
        result = getattr(item, "case_result", None)
        if result is None:
            return
        report.llmregress = result.to_dict()  # type: ignore[attr-defined]
        if not self.is_worker:
            self._own_results[report.nodeid] = result
        baseline = getattr(item, "baseline_result", None)
        if baseline is not None:
            report.llmregress_baseline = baseline.to_dict()  # type: ignore[attr-defined]
        # The score that decided the verdict, against the threshold its scorer applied.
        properties = [("llm_outcome", result.outcome), ("llm_threshold", result.deciding_threshold)]
        deciding = result.deciding_score
        score = deciding.value if deciding is not None else result.score
        if score is not None:
            properties.append(("llm_score", round(score, 4)))
        # JUnit XML reads properties from the teardown report, which copies the item's.
        item.user_properties.extend(properties)
        report.user_properties.extend(properties)

    def gather_report(self, report: pytest.TestReport) -> None:
        """On the controller (or a lone process): keep each golden result as it arrives."""
        if self.is_worker:
            return
        if self.candidate is None and report.skipped and self._is_golden(report.nodeid):
            self.skipped_golden += 1
        if report.when != "call":
            return
        data = getattr(report, "llmregress", None)
        if data is None:
            return
        if report.failed:
            self.golden_failures += 1
        # A lone process still holds the object; only xdist's reports need rebuilding.
        result = self._own_results.pop(report.nodeid, None) or CaseResult.from_dict(data)
        self.results.append(result)
        baseline = getattr(report, "llmregress_baseline", None)
        if baseline is not None:
            self.compare_results.append(CaseResult.from_dict(baseline))

    def note_collect_error(self, nodeid: str) -> None:
        path = nodeid.partition("::")[0]
        if path and self.is_golden_path(self.config.rootpath / path):
            self.broken_golden_files.add(path)
        else:
            self.other_collect_errors += 1

    def conclude(self, session: pytest.Session) -> None:
        """Decide the exit status for golden cases (controller) and finish the run.

        Golden failures follow the gate; anything else that failed still fails the session.
        """
        if self.is_worker:
            self.close()
            return
        verdict = self.verdict()
        if verdict is not None:
            self.comparison = self._compare()
            if self.comparison is not None and self.comparison.is_regression:
                fired = "; ".join(self.comparison.reasons)
                verdict = replace(verdict, reasons=(*verdict.reasons, f"regression: {fired}"))
            if self.comparison_error:  # a gate that cannot see its baseline must not pass
                verdict = replace(verdict, reasons=(*verdict.reasons, self.comparison_error))
            if self.broken_golden_files:  # their cases never ran: the suite is incomplete
                names = ", ".join(sorted(self.broken_golden_files))
                count = len(self.broken_golden_files)
                broken = f"{count} golden file{'s' if count > 1 else ''} could not be loaded"
                reason = f"{broken} (see the collection errors above): {names}"
                verdict = replace(verdict, reasons=(*verdict.reasons, reason))
        self._verdict = verdict
        # A session finished by something other than pytest's main loop (pytest-xdist's
        # looponfail) has no exit status yet: nothing here decides one then.
        status = getattr(session, "exitstatus", None)
        # A run that recorded references gives no verdict: pytest's own status stands.
        if verdict is not None and not verdict.is_recording:
            only_golden_failed = 0 < session.testsfailed == self.golden_failures
            if verdict.ok and status == pytest.ExitCode.TESTS_FAILED and only_golden_failed:
                session.exitstatus = pytest.ExitCode.OK
            elif not verdict.ok and status == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.finish(verdict)
        if self.record_failed and getattr(session, "exitstatus", None) == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _compare(self) -> Any:
        """The paired comparison with ``--llm-baseline`` or ``--llm-compare-model``, if asked."""
        from pytest_llmregress.verdict.compare import compare_runs
        from pytest_llmregress.verdict.results import RunResult, load_results

        settings = self.settings
        if settings.baseline:
            path = Path(settings.baseline)
            try:
                baseline = load_results(path if path.is_absolute() else self.config.rootpath / path)
            except (OSError, ValueError) as exc:
                self.comparison_error = f"--llm-baseline: {exc}"
                return None
            label = f"baseline {settings.baseline}"
        elif self.compare is not None:
            meta = {**self.metadata(), "candidate": str(self.compare)}
            baseline = RunResult(meta, list(self.compare_results))
            label = str(self.compare)
        else:
            return None
        return compare_runs(
            baseline,
            RunResult(self.metadata(), list(self.results)),
            max_regression=settings.max_regression,
            alpha=settings.alpha,
            baseline_fallback=label,
        )

    def summary(self) -> list[Any]:
        from pytest_llmregress.report.terminal import Line, summary_lines

        verdict = self._verdict
        if self.candidate is None and self.skipped_golden:
            return [
                Line(
                    f"{self.skipped_golden} golden cases skipped: no model under test (run with "
                    f"--llm-model=ID, or set model in [tool.llmregress])",
                    "yellow",
                )
            ]
        if self.candidate is None:
            return []
        if verdict is None:  # no case ran: the warnings the header promised are still said
            return [Line(f"model warning: {w}", "yellow") for w in self.model_warnings()]

        lines: list[Any] = summary_lines(
            verdict,
            self.results,
            candidate=str(self.candidate),
            judge=str(self.judge) if self.judge else None,
            resolved=self.resolved_models(),
            worst=self.settings.worst,
            report_path=str(self.report_path) if self.report_path else None,
            missing=self.missing(),
            resumed=sum(1 for r in self.results if r.nodeid in self.resumed),
            model_warnings=self.model_warnings(),
            chain=[str(ref) for ref in (self.candidate, *self.fallbacks)] if self.fallbacks else (),
            cache_use=self.cache_use,
            damaged_state=self.damaged_state,
        )
        lines += [Line(text, "yellow") for text in self.traffic_lines]
        if self.comparison is not None:
            from pytest_llmregress.report.terminal import comparison_lines

            lines += comparison_lines(self.comparison, worst=self.settings.worst)
        if self.comparison_error:
            lines.append(Line(self.comparison_error, "red"))
        for text in self.record_lines:
            lines.append(Line(f"recorded: {text}", "red" if self.record_failed else "green"))
        if self.record_lines:
            lines.append(Line("  review the new references with git diff before committing them"))
        return lines

    def verdict(self) -> Verdict | None:
        if self.candidate is None or not self.results:
            return None
        return decide(
            self.results,
            min_pass_rate=self.settings.min_pass_rate,
            max_error_rate=self.settings.max_error_rate,
            missing=len(self.missing()),
        )

    def metadata(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "plugin_version": __version__,
            "started_at": self.started_at.isoformat(),
            "candidate": str(self.candidate) if self.candidate else None,
            "compare": str(self.compare) if self.compare else None,
            "judge": str(self.judge) if self.judge else None,
            **self._prompts_metadata,  # prompt_model, prompts: see _prompt_resolver
            "base_urls": {name: self.endpoints.describe(name) for name in ("anthropic", "openai")}
            if self.endpoints
            else {},
            "settings": {
                name: getattr(settings, name)
                for name in (
                    "min_pass_rate",
                    "max_error_rate",
                    "concurrency",
                    "judge_concurrency",
                    "timeout",
                    "retries",
                    "rate_limit_wait",
                    "case_deadline",
                    "cache",
                    "judge_cache",
                    "serve",
                    "resume",
                )
            },
        }

    def resolved_models(self) -> dict[str, dict[str, int]]:
        """requested model -> {resolved model (fingerprint): count}, across results."""
        seen: dict[str, dict[str, int]] = {}
        for result in (*self.results, *self.compare_results):
            for completion in (result.completion, result.judge_completion):
                if completion is None:
                    continue
                name = completion.resolved_model
                if completion.system_fingerprint:
                    name += f" ({completion.system_fingerprint})"
                per = seen.setdefault(f"{completion.provider}:{completion.requested_model}", {})
                per[name] = per.get(name, 0) + 1
        return seen

    def finish(self, verdict: Verdict | None) -> None:
        """Write the results document, history copy and markdown; stop what this process started."""
        try:
            if self.candidate is not None and self.results:
                self._write_outputs(verdict)
        finally:
            self.close()

    def _write_outputs(self, verdict: Verdict | None) -> None:
        from pytest_llmregress.verdict.results import RunResult, finish_results, write_json_atomic

        missing = self.missing()
        metadata = self.metadata()
        metadata.update(
            finished_at=dt.datetime.now(dt.UTC).isoformat(),
            resolved_models=self.resolved_models(),
            missing=missing,
            verdict=None
            if verdict is None
            else {
                "ok": None if verdict.is_recording else verdict.ok,
                "recorded": verdict.recorded,
                "passed": verdict.passed,
                "failed": verdict.failed,
                "errors": verdict.errors,
                "pass_rate": verdict.pass_rate,
                "interval95": list(verdict.interval),
                "reasons": list(verdict.reasons),
            },
            comparison=None if self.comparison is None else self.comparison.to_dict(cases=False),
        )

        def in_file_order(results: list[CaseResult]) -> list[CaseResult]:
            return sorted(results, key=lambda r: (r.path, r.line, r.case_id))

        run = RunResult(metadata, in_file_order(self.results), in_file_order(self.compare_results))
        if self.report_path is not None:
            finish_results(self.report_path, run, keep_journals=bool(missing))
        if self.settings.history:
            folder = self._rooted(self.settings.history)
            stamp = self.started_at.strftime("%Y%m%dT%H%M%SZ")
            model = "".join(c if c.isalnum() or c in "-._" else "_" for c in str(self.candidate))
            write_json_atomic(folder / f"{stamp}_{model}.json", run.to_dict())
        self._write_markdown(verdict, run)
        self._record_references()

    def _record_references(self) -> None:
        """``--llm-record``: write recorded outputs into their golden files, once, here."""
        recorded: dict[str | os.PathLike[str], dict[str, str]] = {}
        names: dict[str | os.PathLike[str], str] = {}
        for result in self.results:
            if result.recorded and result.output is not None:
                path = str(self.config.rootpath / result.path)
                recorded.setdefault(path, {})[result.case_id] = result.output
                names[path] = result.path
        if not recorded:
            return
        from pytest_llmregress.authoring.recording import record_many

        reports = record_many(
            recorded, overwrite=self.settings.record == "all", display_paths=names
        )
        self.record_lines = [report.summary() for report in reports]
        if any(report.error for report in reports):
            self.record_failed = True

    def _write_markdown(self, verdict: Verdict | None, run: Any) -> None:
        """The CI summary: to ``--llm-markdown`` and appended to ``$GITHUB_STEP_SUMMARY``."""
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if not self.settings.markdown and not step_summary:
            return
        from pytest_llmregress.report.markdown import comparison_markdown, run_markdown

        text = run_markdown(
            verdict if verdict is not None else run,
            results=self.results,
            candidate=str(self.candidate),
            worst=self.settings.worst,
        )
        if self.comparison is not None:
            text += "\n" + comparison_markdown(self.comparison, worst=self.settings.worst)
        if self.settings.markdown:
            target = self._rooted(self.settings.markdown)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")

    def _rooted(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.config.rootpath / candidate

    def close_runner(self) -> None:
        """Disconnect from the runner process and stop it (if this process started it)."""
        if self.runner is not None:
            self.runner.close()
            self.runner = None
        if self.runner_process is not None:
            self.runner_process.stop()
            self._note_last_words(self.runner_process)
            self.runner_process = None

    def _note_last_words(self, runner_process: RunnerProcess) -> None:
        """What the runner process said at its end: a damaged cache file it moved aside (a
        warning naming both files), damaged entries it replaced and the cache's hits and
        misses (summary lines), judges that refused structured output (a model warning)."""
        from pytest_llmregress.engine.cache import cache_health_lines, cache_use_line

        for notice in runner_process.notices:
            self._warn_about_setting("cache_dir", notice)
        words = runner_process.last_words
        self.damaged_state += cache_health_lines(words.get("cache", {}))
        self.cache_use = cache_use_line(words.get("cache_use", {}), self.settings.cache_dir)
        for judge, why in words.get("plain_judges", {}).items():
            self.preflight_warnings.append(
                f"judge {judge} refused structured output ({why}); its verdicts were asked "
                f"for as plain JSON"
            )
        for model, refusals in words.get("refused_params", {}).items():
            for param, why in refusals.items():
                self.preflight_warnings.append(
                    f"{model} refused the parameter {param} ({why}); its calls were sent without it"
                )
        self.traffic_lines = list(words.get("traffic", {}).values())

    def _check_baseline(self) -> None:
        """A damaged ``--llm-baseline`` file stops the session before any call.

        A missing one is left to the end: the gate fails with the reason in the summary.
        """
        if self.is_worker or self.candidate is None or not self.settings.baseline:
            return
        from pytest_llmregress.verdict.results import load_results

        try:
            load_results(self._rooted(self.settings.baseline))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise pytest.UsageError(f"pytest-llmregress: --llm-baseline: {exc}") from None

    def close(self) -> None:
        self.close_runner()
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self.server is not None:
            self.server.stop()
            self.server = None
