"""The session's parts without pytest around them: a run plan resolved from Settings, the
gatherer's counts, missing cases and verdict, and the writers of a run's outputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_llmregress.cases.golden import load_cases
from pytest_llmregress.providers.base import Completion
from pytest_llmregress.providers.registry import ModelRef
from pytest_llmregress.scoring.score import Score
from pytest_llmregress.session.gather import EXIT_OK, EXIT_TESTS_FAILED, Gatherer
from pytest_llmregress.session.outputs import (
    header_lines,
    junit_properties,
    model_warnings,
    summary,
    write_outputs,
)
from pytest_llmregress.session.plan import PlanError, RunPlan, golden_units, resolve_plan
from pytest_llmregress.settings import Settings
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import CaseResult, load_results

CANDIDATE = "claude-sonnet-4-6"
JUDGE = "gpt-5.5-2026-04-23"
KEYS = {"ANTHROPIC_API_KEY": "sk-ant-test", "OPENAI_API_KEY": "sk-test"}


def result(index: int, outcome: str = "passed", *, path: str = "golden/qa.jsonl") -> CaseResult:
    value = 0.9 if outcome == "passed" else 0.2
    completion = Completion(
        text=f"answer {index}",
        provider="anthropic",
        requested_model=CANDIDATE,
        resolved_model=f"{CANDIDATE}-snapshot",
    )
    return CaseResult(
        case_id=f"case-{index}",
        nodeid=f"{path}::case-{index}",
        path=path,
        line=index + 1,
        outcome=outcome,  # type: ignore[arg-type]
        threshold=0.85,
        scores=() if outcome == "error" else (Score("judge", value, value >= 0.85, "", 0.85),),
        output=f"answer {index}",
        completion=completion,
        error="boom" if outcome == "error" else None,
    )


def plan_for(tmp_path: Path, **settings: object) -> RunPlan:
    return resolve_plan(
        Settings.defaults(**{"model": CANDIDATE, "judge_model": JUDGE, **settings}),
        root=tmp_path,
        environ=KEYS,
    )


# -- the plan ---------------------------------------------------------------------------------


def test_a_plan_resolves_the_models_endpoints_and_prompts_of_a_run(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, report="out/results.json")
    assert plan.candidate == ModelRef("anthropic", CANDIDATE)
    assert plan.judge == ModelRef("openai", JUDGE)
    assert plan.models_by_role() == [("candidate", plan.candidate), ("judge", plan.judge)]
    assert plan.key_problem is None
    assert plan.endpoints is not None
    assert plan.endpoints.api_keys["anthropic"] == "sk-ant-test"
    assert plan.report_path == tmp_path / "out" / "results.json"
    assert plan.cache_dir == tmp_path / ".llmregress" / "cache"
    # Nothing is wrong, so a model will be called: the prompts are resolved.
    assert plan.prompts is not None
    (tmp_path / "qa.jsonl").write_text(json.dumps({"id": "a", "user": "hi", "system": "S"}) + "\n")
    case = load_cases(tmp_path / "qa.jsonl")[0]
    assert plan.prompts.systems(case) == {f"anthropic:{CANDIDATE}": ("S", None)}
    metadata = plan.metadata()
    assert metadata["candidate"] == f"anthropic:{CANDIDATE}"
    assert metadata["judge"] == f"openai:{JUDGE}"
    assert metadata["settings"]["min_pass_rate"] == plan.settings.min_pass_rate


def test_a_missing_key_is_a_problem_for_later_and_no_model_will_be_called(
    tmp_path: Path,
) -> None:
    plan = resolve_plan(
        Settings.defaults(model=CANDIDATE, judge_model=JUDGE),
        root=tmp_path,
        environ={"ANTHROPIC_API_KEY": "sk-ant-test"},
    )
    assert plan.key_problem == (
        f"pytest-llmregress: OPENAI_API_KEY is not set, and openai:{JUDGE} (judge) needs it. "
        "Set it in the environment, or run against the local provider server with "
        "--llm-serve=SCENARIO."
    )
    assert plan.prompts is None  # no runner process, no SDK import


def test_a_same_family_judge_is_a_warning_about_the_judge_setting(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, judge_model="claude-opus-4-7")
    assert [w.option for w in plan.setting_warnings] == ["judge_model"]
    assert "self-preference bias" in plan.setting_warnings[0].message
    worker = resolve_plan(
        Settings.defaults(model=CANDIDATE, judge_model="claude-opus-4-7"),
        root=tmp_path,
        environ=KEYS,
        worker={"workerid": "gw0"},
    )
    assert worker.setting_warnings == ()  # said once, by the controller


@pytest.mark.parametrize(
    ("settings", "dist", "message"),
    [
        (
            {"compare_model": "claude-opus-4-7", "baseline": "base.json"},
            "no",
            "pytest-llmregress: --llm-baseline and --llm-compare-model both name the baseline;"
            " give one",
        ),
        ({}, "each", "pytest-llmregress: --dist each runs every test on every worker"),
        ({"model": "claude-sonnet-4-20250514"}, "no", "pytest-llmregress: no case was run:"),
        ({"model": "no-such-provider:"}, "no", "pytest-llmregress: "),
        ({"serve": "missing.yaml"}, "no", "pytest-llmregress: --llm-serve: no such file: "),
    ],
)
def test_a_run_that_cannot_start_is_a_plan_error_with_the_users_message(
    tmp_path: Path, settings: dict[str, object], dist: str, message: str
) -> None:
    with pytest.raises(PlanError) as raised:
        resolve_plan(
            Settings.defaults(**{"model": CANDIDATE, **settings}),
            root=tmp_path,
            environ=KEYS,
            dist=dist,
            start_server=lambda path: "http://127.0.0.1:9",
        )
    assert str(raised.value).startswith(message)


def test_serve_starts_the_server_through_the_callers_starter(tmp_path: Path) -> None:
    (tmp_path / "scenario.json").write_text(json.dumps({"models": {"*": {"default_reply": "ok"}}}))
    servers: list[LocalProviderServer] = []

    def start(path: Path) -> str:
        servers.append(LocalProviderServer(path).start())
        return servers[-1].url

    try:
        plan = resolve_plan(
            Settings.defaults(model=CANDIDATE, serve="scenario.json"),
            root=tmp_path,
            environ={},  # the local server needs no key
            start_server=start,
        )
        assert len(servers) == 1
        assert plan.endpoints is not None
        assert plan.endpoints.base_urls["anthropic"] == servers[0].url.rstrip("/")
        assert plan.key_problem is None
    finally:
        for server in servers:
            server.stop()


def test_resuming_takes_scored_cases_and_runs_errors_again(tmp_path: Path) -> None:
    first = plan_for(tmp_path, report="results.json")
    gathered = Gatherer(first)
    for index, outcome in enumerate(["passed", "failed", "error"]):
        gathered.add(result(index, outcome))
    gathered.conclude()
    write_outputs(first, gathered, environ={})
    again = plan_for(tmp_path, resume="results.json")
    assert sorted(again.resumed) == ["golden/qa.jsonl::case-0", "golden/qa.jsonl::case-1"]
    assert again.report_path == tmp_path / "results.json"


def test_work_units_are_consecutive_golden_cases(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, golden_files=("golden/*.jsonl",))
    ids = ["test_x.py::test_a", *(f"golden/qa.jsonl::case-{i}" for i in range(4))]
    assert plan.scope_of(ids, 2) == golden_units(ids, plan.is_golden, 2)
    assert sorted(set(plan.scope_of(ids, 2).values())) == ["llmregress-unit-0", "llmregress-unit-1"]
    assert plan.is_golden_path(tmp_path / "golden" / "qa.jsonl")
    assert not plan.is_golden_path(tmp_path / "test_x.py")


# -- the gatherer ------------------------------------------------------------------------------


def test_the_gatherer_counts_results_and_missing_cases_and_decides(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, golden_files=("golden/*.jsonl",), min_pass_rate=0.5)
    gathered = Gatherer(plan)
    expected = gathered.expect(
        ["test_x.py::test_a", *(f"golden/qa.jsonl::case-{i}" for i in range(4))]
    )
    assert len(expected) == 4
    gathered.add(result(0))
    gathered.add(result(1, "failed"), failed=True)
    gathered.add(result(2))
    assert gathered.missing() == ["golden/qa.jsonl::case-3"]
    verdict = gathered.conclude()
    assert verdict is not None
    assert verdict is gathered.verdict
    assert (verdict.passed, verdict.failed, verdict.missing) == (2, 1, 1)
    assert not verdict.ok  # a missing case makes the run incomplete
    assert gathered.exit_status(EXIT_OK, tests_failed=1) == EXIT_TESTS_FAILED
    assert gathered.resolved_models() == {f"anthropic:{CANDIDATE}": {f"{CANDIDATE}-snapshot": 3}}


def test_golden_failures_within_the_gate_exit_zero_and_nothing_else_does(tmp_path: Path) -> None:
    gathered = Gatherer(plan_for(tmp_path, min_pass_rate=0.5))
    gathered.add(result(0))
    gathered.add(result(1, "failed"), failed=True)
    assert gathered.conclude() is not None
    assert gathered.exit_status(EXIT_TESTS_FAILED, tests_failed=1) == EXIT_OK
    # An ordinary test failed too: pytest's status stands.
    assert gathered.exit_status(EXIT_TESTS_FAILED, tests_failed=2) == EXIT_TESTS_FAILED
    assert gathered.exit_status(None, tests_failed=1) is None  # looponfail: none to decide


def test_a_broken_golden_file_fails_the_verdict_and_lets_the_others_run(tmp_path: Path) -> None:
    gathered = Gatherer(plan_for(tmp_path, golden_files=("golden/*.jsonl",)))
    gathered.note_collect_error("golden/broken.jsonl")
    assert gathered.only_golden_files_broken
    gathered.add(result(0))
    verdict = gathered.conclude()
    assert verdict is not None
    assert verdict.reasons == (
        "1 golden file could not be loaded (see the collection errors above): golden/broken.jsonl",
    )
    gathered.note_collect_error("test_broken.py")
    assert not gathered.only_golden_files_broken


def test_a_missing_baseline_fails_the_gate_with_the_reason(tmp_path: Path) -> None:
    gathered = Gatherer(plan_for(tmp_path, baseline="gone.json"))
    gathered.add(result(0))
    verdict = gathered.conclude()
    assert verdict is not None
    assert not verdict.ok
    assert gathered.comparison is None
    assert gathered.comparison_error is not None
    assert gathered.comparison_error.startswith("--llm-baseline: ")
    assert verdict.reasons[-1] == gathered.comparison_error


def test_a_chain_warns_about_a_preflight_problem_while_another_model_answers(
    tmp_path: Path,
) -> None:
    plan = plan_for(tmp_path)
    plan = RunPlan(
        settings=plan.settings,
        root=tmp_path,
        candidate=plan.candidate,
        fallbacks=(ModelRef("anthropic", "claude-opus-4-7"),),
    )
    gathered = Gatherer(plan)
    assert gathered.note_preflight({f"anthropic:{CANDIDATE}": "gone (404)"}) is None
    assert gathered.preflight_warnings == ["gone (404)"]
    refusal = Gatherer(plan).note_preflight(
        {f"anthropic:{CANDIDATE}": "gone (404)", "anthropic:claude-opus-4-7": "gone too"}
    )
    assert refusal is not None
    assert refusal.startswith("pytest-llmregress: preflight: no case was run")


def test_the_runners_last_words_become_warnings_and_summary_lines(tmp_path: Path) -> None:
    gathered = Gatherer(plan_for(tmp_path))
    gathered.note_last_words(
        {
            "plain_judges": {f"openai:{JUDGE}": "400"},
            "refused_params": {f"anthropic:{CANDIDATE}": {"top_k": "400"}},
            "traffic": {"retries": "2 calls retried"},
        }
    )
    assert gathered.traffic_lines == ["2 calls retried"]
    assert model_warnings(gathered.plan, gathered) == [
        f"judge openai:{JUDGE} refused structured output (400); its verdicts were asked for as "
        "plain JSON",
        f"anthropic:{CANDIDATE} refused the parameter top_k (400); its calls were sent without it",
    ]


# -- the outputs ------------------------------------------------------------------------------


def test_the_writer_writes_the_results_file_history_and_markdown(tmp_path: Path) -> None:
    plan = plan_for(
        tmp_path, report="out/results.json", history="history", markdown="out/summary.md"
    )
    gathered = Gatherer(plan)
    gathered.expect([f"golden/qa.jsonl::case-{i}" for i in range(3)])
    for index, outcome in ((2, "passed"), (0, "passed"), (1, "failed")):
        gathered.add(result(index, outcome), failed=outcome == "failed")
    gathered.conclude()
    step_summary = tmp_path / "step.md"
    recorded = write_outputs(plan, gathered, environ={"GITHUB_STEP_SUMMARY": str(step_summary)})
    assert recorded.lines == ()
    assert not recorded.failed
    written = load_results(tmp_path / "out" / "results.json")
    assert [case.case_id for case in written.cases] == ["case-0", "case-1", "case-2"]
    assert written.metadata["verdict"]["passed"] == 2
    assert written.metadata["missing"] == []
    assert written.metadata["candidate"] == f"anthropic:{CANDIDATE}"
    assert len(list((tmp_path / "history").glob("*.json"))) == 1
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert markdown
    assert step_summary.read_text() == markdown + "\n"
    lines = [line.text for line in summary(plan, gathered, recorded)]
    assert any(str(tmp_path / "out" / "results.json") in text for text in lines)


def test_recorded_outputs_are_written_into_their_golden_files(tmp_path: Path) -> None:
    golden = tmp_path / "golden" / "qa.jsonl"
    golden.parent.mkdir()
    golden.write_text(json.dumps({"id": "case-0", "user": "hi"}) + "\n")
    gathered = Gatherer(plan_for(tmp_path, record="missing"))
    recorded_case = result(0)
    gathered.add(replace(recorded_case, recorded=True))
    gathered.conclude()
    recorded = write_outputs(gathered.plan, gathered, environ={})
    assert recorded.lines == ("golden/qa.jsonl: 1 filled",)
    assert not recorded.failed
    assert json.loads(golden.read_text())["reference"] == "answer 0"


def test_header_and_junit_properties(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    header = header_lines(plan)
    assert header[0].startswith(f"llmregress: model anthropic:{CANDIDATE} at ")
    assert header[1].startswith("llmregress: sampling: ")
    assert header_lines(RunPlan(settings=Settings.defaults(), root=tmp_path)) == []
    assert junit_properties(result(1, "failed")) == [
        ("llm_outcome", "failed"),
        ("llm_threshold", 0.85),
        ("llm_score", 0.2),
    ]


def test_require_cross_family_refuses_a_same_family_judge(tmp_path: Path) -> None:
    settings = Settings.defaults(
        model=CANDIDATE, judge_model="claude-opus-4-7", require_cross_family=True
    )
    with pytest.raises(PlanError) as raised:
        resolve_plan(settings, root=tmp_path, environ=KEYS)
    assert str(raised.value) == (
        f"pytest-llmregress: the judge anthropic:claude-opus-4-7 is of the same family "
        f"(claude) as the candidate anthropic:{CANDIDATE}: LLM judges favour their own "
        "family's outputs (self-preference bias); --llm-require-cross-family refuses it: choose "
        "a judge from another family (--llm-judge-model, or the judge role in llmregress.toml)"
    )
    other = resolve_plan(
        Settings.defaults(model=CANDIDATE, judge_model=JUDGE, require_cross_family=True),
        root=tmp_path,
        environ=KEYS,
    )
    assert other.setting_warnings == ()
