"""The run plan: everything a session resolves once, at start-up, and then only reads.

``resolve_plan`` does the start-up work: the model config, the candidate, judge and compare
models and the fallback chain, the lifecycle checks, the endpoints (starting the local provider
server through a callable the caller owns), the missing API keys, the resumed results, the
baseline check and the prompt files. Each refusal is a ``PlanError`` whose message is the one
the user sees (the session raises it as ``pytest.UsageError``). The result, ``RunPlan``, is
frozen. No pytest here: a plan is resolved from ``Settings``, a root folder and an environment.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmregress import __version__
from pytest_llmregress.providers.registry import (
    Endpoints,
    ModelRef,
    ModelSpecError,
    endpoints_from_environment,
    local_server_endpoints,
    parse_model,
)
from pytest_llmregress.settings import RunnerSettings, Settings

if TYPE_CHECKING:
    from pytest_llmregress.cases.golden import GoldenCase
    from pytest_llmregress.engine.runner import CaseRun, SystemPrompt
    from pytest_llmregress.models import LifecycleFinding, ModelConfig
    from pytest_llmregress.models.prices import PriceTable
    from pytest_llmregress.prompts.library import PromptLibrary

WORKER_SERVER_URL = "llmregress_server_url"
WORKER_RUNNER = "llmregress_runner"  # the runner process's address, for xdist workers
WORKER_DIST = "llmregress_dist"  # the controller's --dist mode (a worker's option says "no")

NO_MODEL_REASON = (
    "no model under test: run with --llm-model=ID (or set llm_model in the ini file / "
    "model in [tool.llmregress])"
)
"""Why golden cases and the ``llm`` fixture skip in a session without ``--llm-model``."""

ServerStarter = Callable[[Path], str]
"""Starts the local provider server on a scenario file and gives its URL (``--llm-serve``)."""


class PlanError(Exception):
    """A setting, file or model the run cannot start with; the message is the user's."""


@dataclass(frozen=True)
class SettingWarning:
    """A warning about a setting, shown where the user set ``option`` (``Settings.sources``)."""

    option: str
    message: str


@functools.lru_cache(maxsize=8)
def golden_nodeid_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """A predicate telling golden node ids (``path::case``) from others, by file pattern
    (each file's path matched once: a file's cases share it)."""
    golden_paths: dict[str, bool] = {}

    def is_golden(nodeid: str) -> bool:
        path, sep, rest = nodeid.partition("::")
        if not sep or "::" in rest:
            return False
        known = golden_paths.get(path)
        if known is None:
            known = golden_paths[path] = any(fnmatch.fnmatch(path, p) for p in patterns)
        return known

    return is_golden


def golden_units(
    nodeids: Sequence[str], is_golden: Callable[[str], bool], worker_count: int
) -> dict[str, str]:
    """Map each golden node id to its xdist work unit: one block of consecutive cases a worker.

    A worker starts a whole unit at once, so one unit per worker keeps every worker's calls
    pipelined from its first case to its last (candidate and judge calls overlapping). Smaller
    units would let a worker see its next unit only when the current one ends. The scheduler
    and the workers compute this from the same collection, so they agree on every unit.
    """
    golden = [nodeid for nodeid in nodeids if is_golden(nodeid)]
    size = max(1, -(-len(golden) // max(1, worker_count)))
    return {nodeid: f"llmregress-unit-{index // size}" for index, nodeid in enumerate(golden)}


def dist_problem(dist: str, *, batch: bool = False) -> str | None:
    """Why an xdist ``--dist`` mode cannot run a model: ``each`` would pay for every model call
    once per worker. Every other mode runs each case once: ``load`` through work units
    (``collect/scheduling.py``), the others through the runner process, which runs a case once
    whoever asks for it. ``--llm-batch`` takes no xdist at all: every case's calls wait in the
    one runner's batches, so workers would only wait (and would split the batches)."""
    if batch and dist != "no":
        return (
            "pytest-llmregress: --llm-batch sends every selected case's calls in the runner's "
            "batches, so xdist workers would only wait on them: run it without -n (a "
            "matrix of --llm-shard jobs spreads a suite over machines)"
        )
    if dist != "each":
        return None
    return (
        "pytest-llmregress: --dist each runs every test on every worker, so every golden "
        "case and llm fixture call would be paid once per worker. Use -n N with --dist "
        "load (the default), loadfile, loadscope, loadgroup or worksteal; each runs every "
        "case exactly once."
    )


@dataclass(frozen=True)
class PromptResolver:
    """How a case gets its system prompt for each model that answers it: its literal
    ``system``, or its prompt task's version for the model (``--llm-prompt-model`` borrows
    another model's versions for the candidate)."""

    library: PromptLibrary | None
    forced: str | None  # --llm-prompt-model
    candidate: ModelRef | None
    answering: tuple[ModelRef, ...]  # the candidate, the compare model, the fallbacks

    def system_for(self, case: GoldenCase, model: ModelRef) -> str | None:
        from pytest_llmregress.prompts.library import resolve_system

        target = self.forced if self.forced and model == self.candidate else model.model
        return resolve_system(case, self.library, target)[0]

    def systems(self, case: GoldenCase) -> dict[str, SystemPrompt]:
        """The case's system prompt for each model that answers it, or why there is none."""
        systems: dict[str, SystemPrompt] = {}
        for model in self.answering:
            try:
                systems[str(model)] = (self.system_for(case, model), None)
            except Exception as error:  # a prompt that cannot be resolved for this model
                systems[str(model)] = (None, str(error))
        return systems


@dataclass(frozen=True)
class RunPlan:
    """What one pytest process resolved at start-up; read, never changed, for the whole run.

    ``prompts`` is None when nothing will call a model (no model, ``--collect-only``, a missing
    API key): then no runner process is started and no SDK imported.
    """

    settings: Settings
    root: Path
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    is_worker: bool = False
    model_config: ModelConfig | None = None
    candidate: ModelRef | None = None
    judge: ModelRef | None = None
    panel: tuple[ModelRef, ...] = ()  # the other judges of a panel (--llm-judge-model=A,B,C)
    compare: ModelRef | None = None
    fallbacks: tuple[ModelRef, ...] = ()
    endpoints: Endpoints | None = None
    lifecycle_findings: tuple[LifecycleFinding, ...] = ()  # warnings, said in the summary
    lifecycle_source: str = ""
    key_problem: str | None = None  # API keys that models of this run need but lack
    setting_warnings: tuple[SettingWarning, ...] = ()
    resumed: Mapping[str, CaseRun] = field(default_factory=dict)  # node id -> (result, compare)
    resume_notes: tuple[str, ...] = ()  # damaged journal lines skipped on resume
    prompts: PromptResolver | None = None
    # --llm-max-cost: each model's (input, output) USD per million tokens, by provider:model
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # --llm-batch: the same through the Batch APIs (the table's batch prices)
    batch_prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    prompts_metadata: Mapping[str, Any] = field(default_factory=dict)  # prompt_model, prompts

    # -- derived -----------------------------------------------------------------------------

    def rooted(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.root / candidate

    @property
    def report_path(self) -> Path | None:
        """The results file: ``--llm-report``, else the file being resumed."""
        chosen = self.settings.report or self.settings.resume
        return self.rooted(chosen) if chosen else None

    @property
    def batch_journal(self) -> str | None:
        """Where ``--llm-batch`` journals its batch ids: beside the results file's journals,
        so that ``--llm-resume`` of the file finds them."""
        from pytest_llmregress.verdict.results import BATCH_JOURNAL, journal_dir

        path = self.report_path
        if not self.settings.batch or path is None:
            return None
        return str(journal_dir(path) / BATCH_JOURNAL)

    @property
    def cache_dir(self) -> Path | None:
        """The response cache's folder, or None when nothing is cached."""
        settings = self.settings
        if settings.cache == "off" and settings.judge_cache == "off":
            return None
        return self.rooted(settings.cache_dir)

    @property
    def chain(self) -> tuple[ModelRef, ...]:
        """The candidate and its fallbacks, in the order they are tried."""
        return (self.candidate, *self.fallbacks) if self.candidate else self.fallbacks

    @property
    def judges(self) -> tuple[ModelRef, ...]:
        """Every judge: the one judge, or the panel (the first being ``judge``)."""
        return (self.judge, *self.panel) if self.judge else ()

    @property
    def answering(self) -> tuple[ModelRef, ...]:
        """The models that answer a case: the candidate, the compare model, the fallbacks."""
        return tuple(ref for ref in (self.candidate, self.compare, *self.fallbacks) if ref)

    def models_by_role(self) -> list[tuple[str, ModelRef]]:
        """Every model of the run with its role: candidate, judge, compare, fallback."""
        roles = [("candidate", self.candidate), ("judge", self.judge), ("compare", self.compare)]
        roles += [("judge", ref) for ref in self.panel]
        roles += [("fallback", ref) for ref in self.fallbacks]
        return [(role, ref) for role, ref in roles if ref is not None]

    def price_table(self) -> PriceTable:
        """The bundled prices with the project's ``[tool.llmregress.prices]`` (the model
        config's file); a ``PriceError`` naming file and key."""
        from pytest_llmregress.models.prices import load_prices

        config = self.model_config
        return load_prices(config.path if config is not None else None)

    def is_golden(self, nodeid: str) -> bool:
        """Whether a node id is a golden case (``path::case`` of a ``golden_files`` file)."""
        return golden_nodeid_matcher(self.settings.golden_files)(nodeid)

    def is_golden_path(self, path: Path) -> bool:
        """Whether a file is collected as golden cases (``golden_files`` patterns)."""
        try:
            relative = path.relative_to(self.root).as_posix()
        except ValueError:
            relative = path.as_posix()
        return any(fnmatch.fnmatch(relative, pattern) for pattern in self.settings.golden_files)

    def scope_of(self, nodeids: Sequence[str], worker_count: int) -> dict[str, str]:
        """The xdist work unit of each golden node id (see ``golden_units``)."""
        return golden_units(nodeids, self.is_golden, worker_count)

    def param_problems(self, case: GoldenCase) -> list[tuple[str, str]]:
        """Why a golden case's ``params`` cannot be sent to a model that runs it (``top_k`` to
        OpenAI's API): refused when its file is loaded, not once per case at run time."""
        from pytest_llmregress.providers.registry import OPENAI_EXTRA_PARAMS

        problems = []
        for name in case.params:
            if name not in OPENAI_EXTRA_PARAMS or name in self.settings.openai_extra_params:
                continue
            for ref in self.answering:
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

    def runner_config(self) -> dict[str, Any]:
        """What the runner process needs: models, endpoints (with keys), its settings, cache."""
        from pytest_llmregress.engine.runner_process import runner_config

        settings = self.settings
        assert self.endpoints is not None
        return runner_config(
            endpoints=self.endpoints,
            settings=RunnerSettings.of(settings, batch_journal=self.batch_journal),
            candidate=self.candidate,
            judge=self.judge,
            compare=self.compare,
            fallbacks=self.fallbacks,
            panel=self.panel,
            prices=self.prices,
            batch_prices=self.batch_prices,
            preflight=settings.preflight != "off" and settings.cache != "replay",
            cache_dir=self.cache_dir,
        )

    def metadata(self) -> dict[str, Any]:
        """The results file's metadata as known at start-up (the journals' header)."""
        settings = self.settings
        return {
            "plugin_version": __version__,
            "started_at": self.started_at.isoformat(),
            "candidate": str(self.candidate) if self.candidate else None,
            "compare": str(self.compare) if self.compare else None,
            "judge": str(self.judge) if self.judge else None,
            **({"judges": [str(ref) for ref in self.judges]} if self.panel else {}),
            **self.prompts_metadata,  # prompt_model, prompts: see resolve_prompts
            "base_urls": {name: self.endpoints.describe(name) for name in ("anthropic", "openai")}
            if self.endpoints
            else {},
            "settings": {
                name: getattr(settings, name)
                for name in (
                    "min_pass_rate",
                    "max_error_rate",
                    "repeat",
                    "gate",
                    "judge_repeat",
                    "judge_panel",
                    "judge_order_sample",
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
                    "batch",
                    "max_regression",  # the comparison's and the summary's, for merging shards
                    "alpha",
                    "worst",
                    "shard",
                )
            },
        }


# -- resolution ------------------------------------------------------------------------------


def resolve_plan(
    settings: Settings,
    *,
    root: Path,
    pyproject: Path | None = None,
    environ: Mapping[str, str] | None = None,
    worker: Mapping[str, Any] | None = None,
    dist: str = "no",
    collect_only: bool = False,
    start_server: ServerStarter | None = None,
    started_at: dt.datetime | None = None,
) -> RunPlan:
    """Resolve a run from its settings; raise ``PlanError`` when it cannot start.

    ``root`` is pytest's rootdir (relative paths, ``llmregress.toml``); ``pyproject`` the
    pyproject.toml pytest reads its configuration from, if any; ``environ`` the environment
    (keys, base URLs; default ``os.environ``); ``worker`` an xdist worker's ``workerinput``;
    ``dist`` the ``--dist`` mode; ``start_server`` starts ``--llm-serve``'s server (needed only
    with ``serve`` set). The checks run in the order the user meets their errors.
    """
    plan = RunPlan(
        settings=settings,
        root=root,
        started_at=started_at or dt.datetime.now(dt.UTC),
        is_worker=worker is not None,
    )
    model_config = load_model_config(root, pyproject)
    plan = replace(plan, model_config=model_config, **resolve_models(settings, model_config))
    if settings.record != "off" and settings.repeat > 1:
        raise PlanError(
            "pytest-llmregress: --llm-record takes one output per case as its reference; "
            "run it without --llm-repeat"
        )
    if settings.batch and settings.case_deadline is not None:
        raise PlanError(
            "pytest-llmregress: --llm-case-deadline bounds a case in seconds, and a batch's "
            "results come within 24 hours: run --llm-batch without it"
        )
    if settings.compare_model and settings.baseline:
        raise PlanError(
            "pytest-llmregress: --llm-baseline and --llm-compare-model both name the baseline;"
            " give one"
        )
    if plan.candidate is not None and not plan.is_worker:
        problem = dist_problem(dist, batch=settings.batch)
        if problem:
            raise PlanError(problem)
    plan = check_lifecycle(plan)
    plan = replace(plan, endpoints=resolve_endpoints(settings, root, worker, environ, start_server))
    if not plan.models_by_role():
        return plan
    plan = replace(plan, key_problem=key_problem(plan), setting_warnings=family_warnings(plan))
    if plan.candidate is not None and settings.resume:
        resumed, notes = load_resumed(plan.rooted(settings.resume), plan.compare)
        plan = replace(plan, resumed=resumed, resume_notes=notes)
    check_baseline(plan)
    prices, batch_prices = run_prices(plan)
    plan = replace(plan, prices=prices, batch_prices=batch_prices)
    if collect_only or plan.key_problem:
        # Nothing will call a model: start no process, import no SDK. A missing key stops
        # the session only if a selected test needs a model (the session's ``before_run``).
        return plan
    return resolve_prompts(plan)  # bad prompt files stop the run here


def run_prices(
    plan: RunPlan,
) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """The price of every model of the run that has one, online and through the Batch API,
    for the runner (its spend in the progress line, and ``--llm-max-cost``). With a budget, a
    model without a price, or prices that do not read, are a ``PlanError`` (a budget cannot
    bound calls it cannot price); without one they only leave the spend unknown (the summary
    says why)."""
    from pytest_llmregress.models.prices import PriceError

    budget = plan.settings.max_cost is not None
    try:
        table = plan.price_table()
    except PriceError as exc:
        if not budget:
            return {}, {}
        raise PlanError(f"pytest-llmregress: --llm-max-cost: {exc}") from None
    prices: dict[str, tuple[float, float]] = {}
    batch_prices: dict[str, tuple[float, float]] = {}
    unpriced: list[str] = []
    for _, ref in plan.models_by_role():
        price = table.lookup(ref.provider, ref.model)
        if price is None:
            unpriced.append(str(ref))
        else:
            prices[str(ref)] = (price.input, price.output)
            batch_prices[str(ref)] = price.batch
    if unpriced and budget:
        raise PlanError(
            f"pytest-llmregress: --llm-max-cost needs the price of every model of the run; "
            f"none is known for {', '.join(dict.fromkeys(unpriced))} (add it under "
            '[tool.llmregress.prices."ID"], see docs/cost.md)'
        )
    return prices, batch_prices


def load_model_config(root: Path, pyproject: Path | None) -> ModelConfig:
    """The model config beside pytest's own: llmregress.toml in the rootdir, else the
    pyproject.toml pytest reads. A pyproject pytest does not read is none of our business."""
    from pytest_llmregress.models import (
        CONFIG_FILENAME,
        ModelConfig,
        ModelConfigError,
    )
    from pytest_llmregress.models import (
        load_model_config as load,
    )

    dedicated = root / CONFIG_FILENAME
    path = dedicated if dedicated.is_file() else pyproject
    if path is None:
        return ModelConfig()
    try:
        return load(path=path)
    except ModelConfigError as exc:
        raise PlanError(f"pytest-llmregress: {exc}") from None


def resolve_models(settings: Settings, model_config: ModelConfig) -> dict[str, Any]:
    """The candidate, judge (and panel) and compare models and the fallback chain
    (``RunPlan`` fields)."""
    judge_models = settings.judge_models
    if not judge_models and "judge" in model_config.roles:
        judge_models = ("@judge",)  # the config's judge role is the default judge
    compare = None
    fallbacks: tuple[ModelRef, ...] = ()
    try:
        model = model_config.resolve(settings.model) if settings.model else None
        candidate = parse_model(model) if model else None
        judges = tuple(parse_model(model_config.resolve(spec)) for spec in judge_models)
        if settings.compare_model and candidate is not None:
            compare = parse_model(model_config.resolve(settings.compare_model))
        if settings.fallback and candidate is not None:
            fallbacks = fallback_chain(model_config, settings.model or "")
    except (ModelSpecError, ValueError) as exc:
        raise PlanError(f"pytest-llmregress: {exc}") from None
    twice = sorted({str(ref) for ref in judges if judges.count(ref) > 1})
    if twice:
        raise PlanError(
            f"pytest-llmregress: --llm-judge-model names {', '.join(twice)} more than once; a "
            "panel's judges are different models (--llm-judge-repeat repeats one)"
        )
    return {
        "candidate": candidate,
        "judge": judges[0] if judges else None,
        "panel": judges[1:],
        "compare": compare,
        "fallbacks": fallbacks,
    }


def fallback_chain(model_config: ModelConfig, model: str) -> tuple[ModelRef, ...]:
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


def check_lifecycle(plan: RunPlan) -> RunPlan:
    """Retired models stop the run before any call; aliases and near retirements warn.

    With ``--llm-fallback`` a retired model of the chain (the candidate or a fallback) only
    warns while another model of the chain has no error: the chain answers with that one.
    When no model of the chain is left, the error names each of them. The judge and the
    compare model answer alone: their errors always stop the run.
    """
    if plan.candidate is None or plan.model_config is None:
        return plan
    settings = plan.settings
    data = plan.model_config.lifecycle()
    source = data.describe()
    findings: list[LifecycleFinding] = []
    chain_roles = ("candidate", "fallback")
    live: list[str] = []  # models of the fallback chain with no error
    for role, ref in plan.models_by_role():
        found = data.check(
            ref.model,
            role,
            warning_days=settings.retirement_warning_days,
            require_pinned=settings.require_pinned,
        )
        findings += found
        if role in chain_roles and all(f.level != "error" for f in found):
            live.append(str(ref))
    chain_note = ""
    if plan.fallbacks and live:
        # Only retirement is lifted: a chain does not answer --llm-require-pinned.
        answers = f"; --llm-fallback: the chain answers with {', '.join(live)}"
        findings = [
            replace(f, level="warning", message=f.message + answers)
            if f.level == "error" and f.code == "retired" and f.role in chain_roles
            else f
            for f in findings
        ]
    elif plan.fallbacks:
        members = ", ".join(str(ref) for ref in plan.chain)
        chain_note = f"\n  --llm-fallback: no model of the chain can answer ({members})"
    errors = [f for f in findings if f.level == "error"]
    if errors:
        listed = "\n  ".join(f.message for f in errors)
        hint = " (--llm-require-pinned is set)" if settings.require_pinned else ""
        raise PlanError(
            f"pytest-llmregress: no case was run{hint}:\n  {listed}{chain_note}\n({source})"
        )
    # Said once, in the summary, where the snapshot each alias answered as is known.
    return replace(plan, lifecycle_findings=tuple(findings), lifecycle_source=source)


def resolve_endpoints(
    settings: Settings,
    root: Path,
    worker: Mapping[str, Any] | None,
    environ: Mapping[str, str] | None,
    start_server: ServerStarter | None,
) -> Endpoints:
    """Where calls go: the controller's local server (a worker), a local server started here
    (``--llm-serve``), else the base URLs of the options and the environment."""
    if worker is not None:
        url = worker.get(WORKER_SERVER_URL)
        if url:
            return local_server_endpoints(url)
    elif settings.serve:
        from pytest_llmregress.testing.scenario import ScenarioError

        if start_server is None:
            raise ValueError("resolve_plan: --llm-serve needs a start_server")
        path = serve_path(settings.serve, root)
        try:
            return local_server_endpoints(start_server(path))
        except ScenarioError as exc:
            raise PlanError(f"pytest-llmregress: --llm-serve: {exc}") from None
    return endpoints_from_environment(
        settings.anthropic_base_url, settings.openai_base_url, environ
    )


def serve_path(serve: str, root: Path) -> Path:
    """``--llm-serve``'s scenario file: as given, else under the rootdir."""
    path = Path(serve)
    if not path.is_absolute() and not path.exists():
        path = root / path
    if not path.exists():
        raise PlanError(f"pytest-llmregress: --llm-serve: no such file: {path}")
    return path


def key_problem(plan: RunPlan) -> str | None:
    """Which API key each model of the run lacks, or None when every key is there."""
    assert plan.endpoints is not None
    needs: dict[str, list[str]] = {}
    for role, ref in plan.models_by_role():
        for variable in plan.endpoints.missing_keys([ref]):
            needs.setdefault(variable, []).append(f"{ref} ({role})")
    if not needs:
        return None
    listed = "; ".join(f"{var} is not set, and {', '.join(m)} needs it" for var, m in needs.items())
    return (
        f"pytest-llmregress: {listed}. Set it in the environment, or run against the local "
        f"provider server with --llm-serve=SCENARIO."
    )


def family_warnings(plan: RunPlan) -> tuple[SettingWarning, ...]:
    """A judge of the candidate's family favours it: a warning (said once, not by each xdist
    worker), or with ``--llm-require-cross-family`` a ``PlanError``."""
    candidate = plan.candidate
    same = [judge for judge in plan.judges if candidate and judge.family == candidate.family]
    if candidate is None or not same:
        return ()
    judge = same[0]
    problem = (
        f"the judge {judge} is of the same family ({judge.family}) as the "
        f"candidate {candidate}: LLM judges favour their own family's outputs "
        f"(self-preference bias)"
    )
    if plan.settings.require_cross_family:
        raise PlanError(
            f"pytest-llmregress: {problem}; --llm-require-cross-family refuses it: choose a "
            "judge from another family (--llm-judge-model, or the judge role in llmregress.toml)"
        )
    if plan.is_worker:
        return ()
    return (SettingWarning("judge_model", f"{problem}; prefer a judge from another family"),)


def load_resumed(
    target: Path, compare: ModelRef | None
) -> tuple[dict[str, CaseRun], tuple[str, ...]]:
    """Scored cases of an earlier run, by node id (its errors run again), and the damaged
    journal lines skipped reading it.

    With ``--llm-compare-model`` a case is taken only with the same compare model's scored
    result on it, so every case stays paired; the others run again, both models.
    """
    from pytest_llmregress.verdict.results import read_results

    try:
        earlier, skipped = read_results(target)
    except FileNotFoundError:
        return {}, ()  # nothing to resume: this run starts the file
    except (OSError, ValueError) as exc:
        raise PlanError(f"pytest-llmregress: --llm-resume: {exc}") from None
    notes = tuple(
        f"resume: {lines.describe()}; {'their cases' if len(lines.lines) > 1 else 'its case'}"
        f" ran again"
        for lines in skipped
    )
    if compare is None:
        alone: dict[str, CaseRun] = {
            case.nodeid: (case, None) for case in earlier.cases if case.outcome != "error"
        }
        return alone, notes
    if earlier.metadata.get("compare") != str(compare):
        return {}, notes
    compared = {case.nodeid: case for case in earlier.compare_cases}
    paired: dict[str, CaseRun] = {
        case.nodeid: (case, compared[case.nodeid])
        for case in earlier.cases
        if case.outcome != "error"
        and case.nodeid in compared
        and compared[case.nodeid].outcome != "error"
    }
    return paired, notes


def check_baseline(plan: RunPlan) -> None:
    """A damaged ``--llm-baseline`` file stops the session before any call.

    A missing one is left to the end: the gate fails with the reason in the summary.
    """
    settings = plan.settings
    if plan.is_worker or plan.candidate is None or not settings.baseline:
        return
    from pytest_llmregress.verdict.results import load_results

    try:
        load_results(plan.rooted(settings.baseline))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise PlanError(f"pytest-llmregress: --llm-baseline: {exc}") from None


def resolve_prompts(plan: RunPlan) -> RunPlan:
    """The prompt files (``prompts_dir``), checked and loaded, as the plan's ``prompts``; and
    what the results file records about them (``prompts_metadata``)."""
    from pytest_llmregress.prompts.library import (
        PromptError,
        PromptLibrary,
        check_prompt_model,
        prompts_metadata,
    )

    settings = plan.settings
    directory = plan.rooted(settings.prompts_dir)
    library = None  # without the folder, a case with a `prompt` ends in an error saying so
    if directory.is_dir():
        try:
            library = PromptLibrary.load(
                directory,
                display_dir=settings.prompts_dir,
                lifecycle=plan.model_config.lifecycle() if plan.model_config else None,
            )
        except PromptError as exc:
            raise PlanError(f"pytest-llmregress: prompt files:\n{exc}") from None
    forced = settings.prompt_model
    if forced:
        try:  # a typo would silently give every task its default
            check_prompt_model(library, forced, source=settings.prompts_dir)
        except PromptError as exc:
            raise PlanError(f"pytest-llmregress: --llm-prompt-model {exc}") from None
    prompts_for = forced or (plan.candidate.model if plan.candidate else None)
    return replace(
        plan,
        prompts=PromptResolver(library, forced, plan.candidate, plan.answering),
        prompts_metadata=prompts_metadata(library, prompts_for, prompt_model=forced),
    )
