"""The gatherer: what a run produced, and its verdict.

On the controller (or a lone pytest process) the session hands the ``Gatherer`` each golden
result as its report arrives, each collection error and each golden case skipped for want of a
model; at the end ``conclude`` decides: the gate over the results, joined by the paired
comparison (``--llm-baseline``, ``--llm-compare-model``) and by golden files that could not be
loaded. It also keeps what the run learned besides results (the preflight's and the runner's
warnings, the cache's use, what was healed), which the summary says. No pytest here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pytest_llmregress.verdict.gate import Verdict, decide
from pytest_llmregress.verdict.results import CaseResult, in_file_order

if TYPE_CHECKING:
    from pytest_llmregress.session.plan import RunPlan
    from pytest_llmregress.verdict.compare import Comparison
    from pytest_llmregress.verdict.cost import CostChange, RunCost
    from pytest_llmregress.verdict.judging import Noise


# pytest's exit statuses (``pytest.ExitCode``) that the gate may turn into each other.
EXIT_OK = 0
EXIT_TESTS_FAILED = 1


@dataclass(frozen=True)
class Costs:
    """What the session's calls cost: the candidate's and the judge's (``run``), the
    ``--llm-compare-model``'s (named ``label``), the comparison's cost change; ``error`` when
    the project's prices do not read (then nothing is priced)."""

    run: RunCost | None = None
    compare: RunCost | None = None
    change: CostChange | None = None
    label: str = ""
    error: str | None = None


class Gatherer:
    """The results, collection errors and verdict of one run, on the process that decides."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.expected: set[str] = set()  # golden node ids this run should produce results for
        self.results: list[CaseResult] = []
        self.compare_results: list[CaseResult] = []  # the compare model's, paired by case
        self.golden_failures = 0  # failed reports that are golden verdicts, not broken tests
        self.broken_golden_files: set[str] = set()  # golden files that failed to load
        self.other_collect_errors = 0
        self.skipped_golden = 0  # golden cases skipped for want of a model
        self.verdict: Verdict | None = None  # set by ``conclude``
        self.comparison: Comparison | None = None
        self.comparison_error: str | None = None
        # What the run learned besides results, said in the summary.
        self.preflight_warnings: list[str] = []  # models that warn but answer
        self.damaged_state: list[str] = list(plan.resume_notes)  # healed or skipped
        self.traffic_lines: list[str] = []  # retries, timeouts, back-off
        self.cache_use: str | None = None  # the cache's hits and misses
        # What the end of the run derives from the results, for every output: computed once
        # (``noise``, ``costs``), forgotten when a result arrives or the verdict is made.
        self._derived: dict[str, Any] = {}

    # -- during the run ----------------------------------------------------------------------

    def expect(self, nodeids: Iterable[str]) -> set[str]:
        """Record the golden cases among ``nodeids`` this run should produce (the denominator)."""
        self.expected = {nodeid for nodeid in nodeids if self.plan.is_golden(nodeid)}
        return self.expected

    def add(
        self, result: CaseResult, baseline: CaseResult | None = None, *, failed: bool = False
    ) -> None:
        """A golden result (and the compare model's on the same case); ``failed``: its report
        failed, which the gate may forgive."""
        if failed:
            self.golden_failures += 1
        self._derived.clear()
        self.results.append(result)
        if baseline is not None:
            self.compare_results.append(baseline)

    def note_skipped(self, nodeid: str) -> None:
        """A skipped test: counted when it is a golden case skipped for want of a model."""
        if self.plan.candidate is None and self.plan.is_golden(nodeid):
            self.skipped_golden += 1

    def note_collect_error(self, nodeid: str) -> None:
        path = nodeid.partition("::")[0]
        if path and self.plan.is_golden_path(self.plan.root / path):
            self.broken_golden_files.add(path)
        else:
            self.other_collect_errors += 1

    @property
    def only_golden_files_broken(self) -> bool:
        """Every collection error came from a golden file: the other files may still run."""
        return bool(self.broken_golden_files) and not self.other_collect_errors

    def note_preflight(self, problems: Mapping[str, str]) -> str | None:
        """The preflight's answer (model -> problem): why the run cannot start, or None.

        A fallback chain answers as long as one of its models does: the others only warn.
        """
        problems = dict(problems)
        chain = [str(ref) for ref in self.plan.chain]
        if self.plan.fallbacks and not all(ref in problems for ref in chain):
            self.preflight_warnings = [problems.pop(ref) for ref in chain if ref in problems]
        if not problems:
            return None
        listed = "\n  ".join(problems.values())
        return (
            f"pytest-llmregress: preflight: no case was run, because these models are not "
            f"available:\n  {listed}\n(--llm-preflight=off skips this check)"
        )

    def note_last_words(self, words: Mapping[str, Any]) -> None:
        """What the runner process said at its end: damaged cache entries it replaced and the
        cache's hits and misses (summary lines), judges that refused structured output and
        refused parameters (model warnings), what the calls met on the network."""
        from pytest_llmregress.engine.cache import cache_health_lines, cache_use_line

        self.damaged_state += cache_health_lines(words.get("cache", {}))
        self.cache_use = cache_use_line(words.get("cache_use", {}), self.plan.settings.cache_dir)
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

    # -- reading -----------------------------------------------------------------------------

    def missing(self) -> list[str]:
        """Golden cases that were collected but have no result (interrupted, worker died)."""
        if self.plan.candidate is None:
            return []
        done = {result.nodeid for result in self.results}
        return sorted(self.expected - done)

    def resumed_count(self) -> int:
        """Results taken from the resumed results file, not run again."""
        return sum(1 for result in self.results if result.nodeid in self.plan.resumed)

    def resolved_models(self) -> dict[str, dict[str, int]]:
        """requested model -> {resolved model (fingerprint): count}, across results."""
        seen: dict[str, dict[str, int]] = {}
        runs = [run for r in (*self.results, *self.compare_results) for run in r.repeats or (r,)]
        for result in runs:
            for completion in (result.completion, result.judge_completion):
                if completion is None:
                    continue
                name = completion.resolved_model
                if completion.system_fingerprint:
                    name += f" ({completion.system_fingerprint})"
                per = seen.setdefault(f"{completion.provider}:{completion.requested_model}", {})
                per[name] = per.get(name, 0) + 1
        return seen

    # -- the end -----------------------------------------------------------------------------

    def gate(self) -> Verdict | None:
        """The gate over the results alone; None without a model or without results."""
        if self.plan.candidate is None or not self.results:
            return None
        settings = self.plan.settings
        return decide(
            self.results,
            min_pass_rate=settings.min_pass_rate,
            max_error_rate=settings.max_error_rate,
            missing=len(self.missing()),
            gate=settings.gate,
        )

    def noise(self) -> Noise:
        """What the results say about their noise: repeats, judges, the order check."""
        from pytest_llmregress.verdict.judging import noise

        if "noise" not in self._derived:
            self._derived["noise"] = noise(self.results)
        result: Noise = self._derived["noise"]
        return result

    def costs(self) -> Costs:
        """What the run's calls cost (``verdict/cost.py``'s arithmetic on the results, priced
        with the plan's table); after ``conclude``, with the comparison's cost change."""
        if "costs" not in self._derived:
            self._derived["costs"] = self._price()
        result: Costs = self._derived["costs"]
        return result

    def _price(self) -> Costs:
        from pytest_llmregress.models.prices import PriceError
        from pytest_llmregress.verdict.cost import cost_change, run_cost

        try:
            table = self.plan.price_table()
        except PriceError as error:
            return Costs(error=f"cost: prices not read: {error}")
        compare = self.compare_results
        return Costs(
            run=run_cost(self.results, table),
            compare=run_cost(compare, table) if compare else None,
            change=cost_change(self.comparison, table) if self.comparison is not None else None,
            label=str(self.plan.compare or ""),
        )

    def conclude(self) -> Verdict | None:
        """The run's verdict: the gate, a regression against the baseline, a baseline that
        could not be read, golden files that could not be loaded. Kept in ``verdict``."""
        verdict = self.gate()
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
        self._derived.clear()  # the comparison is known now
        self.verdict = verdict
        return verdict

    def exit_status(self, status: int | None, tests_failed: int) -> int | None:
        """pytest's exit status after the verdict (see "The exit-status rule" in
        docs/architecture.md): golden failures within the gate exit 0, a failed gate fails
        an otherwise passing session, and nothing else changes. ``status`` None: a session
        that pytest's main loop did not finish (xdist's looponfail) gets none."""
        verdict = self.verdict
        # A run that recorded references gives no verdict: pytest's own status stands.
        if status is None or verdict is None or verdict.is_recording:
            return status
        only_golden_failed = 0 < tests_failed == self.golden_failures
        if verdict.ok and status == EXIT_TESTS_FAILED and only_golden_failed:
            return EXIT_OK
        if not verdict.ok and status == EXIT_OK:
            return EXIT_TESTS_FAILED
        return status

    def _compare(self) -> Comparison | None:
        """The paired comparison with ``--llm-baseline`` or ``--llm-compare-model``, if asked."""
        from pytest_llmregress.verdict.compare import compare_runs
        from pytest_llmregress.verdict.results import RunResult, load_results

        plan = self.plan
        settings = plan.settings
        if settings.baseline:
            try:
                baseline = load_results(plan.rooted(settings.baseline))
            except (OSError, ValueError) as exc:
                self.comparison_error = f"--llm-baseline: {exc}"
                return None
            label = f"baseline {settings.baseline}"
        elif plan.compare is not None:
            meta = {**plan.metadata(), "candidate": str(plan.compare)}
            baseline = RunResult(meta, in_file_order(self.compare_results))
            label = str(plan.compare)
        else:
            return None
        return compare_runs(
            baseline,
            RunResult(plan.metadata(), in_file_order(self.results)),
            max_regression=settings.max_regression,
            alpha=settings.alpha,
            baseline_fallback=label,
        )
