"""A team's own scorers: the registry, the hook, and scoring in the pytest process.

Unit tests of ``ScorerRegistry`` (registering, duplicates, did-you-mean, option errors, golden
files validated against it), of ``score_team_scorers`` (the outcome decided again by the
runner's rule), a real runner process whose ``RunnerClient`` finishes results with a team's
scorer, and pytester runs in which a ``conftest.py`` scorer decides golden cases.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from pytest_llmregress.cases.golden import CaseFileError, GoldenCase, Message, parse_jsonl
from pytest_llmregress.engine.runner_process import RunnerClient, RunnerProcess
from pytest_llmregress.providers.registry import local_server_endpoints, parse_model
from pytest_llmregress.scoring.finish import finish_with_team_scorers, score_team_scorers
from pytest_llmregress.scoring.registry import (
    OptionReader,
    ScorerRegistry,
    ScorerSpec,
    activate_scorers,
    active_scorers,
    builtin_scorers,
)
from pytest_llmregress.scoring.score import Score, ScorerError
from pytest_llmregress.scoring.scorers import SCORER_NAMES, needs_reference, parse_scorer_spec
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import CaseResult
from tests.conftest import CANDIDATE
from tests.test_plugin_e2e import write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
StartRunner = Callable[..., tuple[RunnerProcess, RunnerClient]]
PointEnv = Callable[[LocalProviderServer], None]


def days_scorer(options: Mapping[str, Any], output: str, case: GoldenCase) -> Score:
    """A domain check: the answer states the refund period of ``options['days']`` days."""
    days = options["days"]
    ok = f"{days} days" in output
    reason = f"states {days} days" if ok else f"does not state {days} days"
    return Score("days", float(ok), ok, reason, threshold=1.0)


def team_registry() -> ScorerRegistry:
    registry = ScorerRegistry.with_builtins()
    registry.register("days", options=("days",))(days_scorer)
    return registry


@pytest.fixture
def team() -> Iterator[ScorerRegistry]:
    """A registry with the team's ``days`` scorer, active (golden files validate against it)."""
    registry = team_registry()
    undo = activate_scorers(registry)
    yield registry
    undo()


def make_case(*scorers: ScorerSpec, reference: str | None = "30 days") -> GoldenCase:
    return GoldenCase(
        id="refund",
        messages=(Message("user", "How long does a refund take?"),),
        reference=reference,
        scorers=scorers,
        path="golden/refund.jsonl",
        line=1,
    )


def arrived(case: GoldenCase, *scores: Score, output: str = "It takes 30 days.") -> CaseResult:
    """A result as it arrives from the runner: the built-ins' scores, its own verdict."""
    passed = all(s.passed for s in scores)
    return CaseResult(
        case_id=case.id,
        nodeid=f"{case.path}::{case.id}",
        path=case.path,
        line=case.line,
        outcome="passed" if passed else "failed",
        threshold=case.threshold,
        scores=scores,
        output=output,
        reference=case.reference,
        duration_s=1.0,
    )


# -- the registry --------------------------------------------------------------------------------


def test_the_built_in_scorers_register_like_a_team_s() -> None:
    assert builtin_scorers().names == SCORER_NAMES
    assert ScorerRegistry.with_builtins().names == SCORER_NAMES
    assert active_scorers().names[: len(SCORER_NAMES)] == SCORER_NAMES


def test_a_team_scorer_parses_into_a_spec_scored_by_the_pytest_process(
    team: ScorerRegistry,
) -> None:
    spec = team.parse_spec({"days": {"days": 30}})
    assert spec == ScorerSpec("days", {"days": 30}, in_pytest=True, uses_reference=False)
    assert team.parse_spec("exact") == ScorerSpec("exact", {})  # built-ins: as before
    assert parse_scorer_spec({"days": {"days": 30}}) == spec  # through the active registry
    assert not needs_reference(spec)


def test_registering_a_name_twice_is_refused_with_where_it_came_from() -> None:
    registry = team_registry()
    with pytest.raises(ValueError, match=r".") as info:
        registry.register("exact")(days_scorer)
    assert str(info.value) == (
        "scorer 'exact' is already registered (by pytest-llmregress: a built-in scorer); "
        "each name is registered once: choose another name"
    )
    with pytest.raises(ValueError, match=r".") as info:
        registry.register("days")(days_scorer)
    assert str(info.value) == (
        f"scorer 'days' is already registered (by {days_scorer.__module__}.days_scorer); "
        "each name is registered once: choose another name"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "a scorer name must be a non-empty word, got string ''"),
        (" days", "a scorer name must be a non-empty word, got string ' days'"),
        (3, "a scorer name must be a non-empty word, got integer 3"),
        ("record", "scorer name 'record' is reserved (it marks a recorded reference); choose "),
    ],
)
def test_bad_names_are_refused(name: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r".") as info:
        ScorerRegistry().register(name)(days_scorer)
    assert str(info.value).startswith(message)


def test_the_shared_built_in_registry_is_read_only() -> None:
    with pytest.raises(RuntimeError, match="pytest_llmregress_register_scorers"):
        builtin_scorers().register("days")(days_scorer)
    assert "days" not in builtin_scorers()


def test_options_must_be_names_or_a_parser() -> None:
    with pytest.raises(TypeError, match="options must be a list of option names or a parser"):
        ScorerRegistry().register("days", options="days")


def test_unknown_names_suggest_the_team_s_scorers_too(team: ScorerRegistry) -> None:
    with pytest.raises(ValueError, match=r".") as info:
        team.parse_spec({"dayz": {"days": 30}})
    assert str(info.value) == (
        "unknown scorer 'dayz' (expected one of: judge, exact, contains, regex, json, "
        "similarity, days); did you mean 'days'?"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"days": {"dayz": 30}},
            "scorer 'days': unknown option 'dayz' (expected one of: days); did you mean 'days'?",
        ),
        ({"days": 30}, "scorer 'days': expected a mapping of options, got integer 30"),
        ({"days": {"days": float("nan")}}, "scorer 'days': its options parser returned "),
        ({"none": {"x": 1}}, "scorer 'none': unknown option 'x' (it has none)"),
    ],
)
def test_option_errors_name_the_scorer_and_the_option(
    team: ScorerRegistry, raw: object, message: str
) -> None:
    team.register("none")(days_scorer)
    with pytest.raises(ValueError, match=r".") as info:
        team.parse_spec(raw)
    assert str(info.value).startswith(message)


def test_a_parser_s_errors_become_messages_about_the_scorer() -> None:
    def strict(raw: object) -> Mapping[str, Any]:
        reader = OptionReader("strict", raw, ("level",))
        if "level" in reader.raw and reader.raw["level"] not in ("low", "high"):
            raise reader.error("level", f"expected 'low' or 'high', got {reader.raw['level']!r}")
        return dict(reader.raw)

    def terse(raw: object) -> Mapping[str, Any]:
        raise ValueError("expected a level")

    def buggy(raw: object) -> Mapping[str, Any]:
        return {"x": 1}["y"]  # type: ignore[return-value]

    def not_a_mapping(raw: object) -> Mapping[str, Any]:
        return ["x"]  # type: ignore[return-value]

    registry = ScorerRegistry()
    for name, parser in [
        ("strict", strict),
        ("terse", terse),
        ("buggy", buggy),
        ("listy", not_a_mapping),
    ]:
        registry.register(name, options=parser)(days_scorer)
    cases = {
        "strict": "scorer 'strict': option 'level': expected 'low' or 'high', got 'mid'",
        "terse": "scorer 'terse': expected a level",
        "buggy": "scorer 'buggy': its options parser raised KeyError: 'y'",
        "listy": "scorer 'listy': its options parser returned list ['x'], expected a mapping",
    }
    for name, message in cases.items():
        with pytest.raises(ValueError, match=r".") as info:
            registry.parse_spec({name: {"level": "mid"}})
        assert str(info.value) == message
    assert registry.parse_spec({"strict": {"level": "low"}}).options == {"level": "low"}


def test_whether_a_team_scorer_needs_the_reference_may_depend_on_its_options() -> None:
    registry = ScorerRegistry()
    registry.register("near", options=("target",), needs_reference=lambda o: "target" not in o)(
        days_scorer
    )
    assert registry.parse_spec("near").uses_reference is True
    assert needs_reference(registry.parse_spec("near"))
    assert not needs_reference(registry.parse_spec({"near": {"target": "x"}}))


def test_golden_files_are_validated_against_the_active_registry(team: ScorerRegistry) -> None:
    good = json.dumps({"id": "a", "user": "q", "scorers": [{"days": {"days": 30}}, "exact"]})
    [case] = parse_jsonl(good + "\n", "g.jsonl")
    assert [spec.in_pytest for spec in case.scorers] == [True, False]

    bad = json.dumps({"id": "a", "user": "q", "scorers": ["exact", {"days": {"day": 3}}]})
    with pytest.raises(CaseFileError) as info:
        parse_jsonl(bad + "\n", "g.jsonl")
    assert str(info.value) == (
        "g.jsonl:1: case 'a': field 'scorers[1]': scorer 'days': unknown option 'day' "
        "(expected one of: days); did you mean 'days'?"
    )


def test_without_the_team_s_registry_its_scorer_is_unknown() -> None:
    text = json.dumps({"id": "a", "user": "q", "scorers": [{"days": {"days": 30}}]}) + "\n"
    with pytest.raises(CaseFileError, match=r"field 'scorers\[0\]': unknown scorer 'days'"):
        parse_jsonl(text, "g.jsonl")


def test_activations_nest_and_undo_only_themselves() -> None:
    outer, inner = team_registry(), team_registry()
    undo_outer = activate_scorers(outer)
    undo_inner = activate_scorers(inner)
    assert active_scorers() is inner
    undo_outer()
    assert active_scorers() is inner
    undo_inner()
    assert active_scorers() is not inner
    assert active_scorers() is not outer


def test_a_team_spec_crosses_to_the_runner_process_without_its_code(team: ScorerRegistry) -> None:
    case = make_case(team.parse_spec({"days": {"days": 30}}), team.parse_spec("similarity"))
    data = json.loads(json.dumps(case.to_dict()))
    assert data["scorers"] == [
        {"name": "days", "options": {"days": 30}, "in_pytest": True, "uses_reference": False},
        {"name": "similarity", "options": {}},
    ]
    # The runner process knows only the built-ins, and rebuilds the case all the same.
    undo = activate_scorers(ScorerRegistry.with_builtins())
    try:
        rebuilt = GoldenCase.from_dict(data)
    finally:
        undo()
    assert rebuilt == case


# -- scoring in the pytest process ---------------------------------------------------------------


def test_a_team_scorer_decides_with_the_runner_s_rule(team: ScorerRegistry) -> None:
    exact = team.parse_spec({"exact": {"value": "It takes 30 days."}})
    finish = finish_with_team_scorers(team)
    case = make_case(team.parse_spec({"days": {"days": 30}}), exact)
    built_in = Score("exact", 1.0, True, "output equals the expected value", threshold=1.0)

    passed = finish(arrived(case, built_in), case)
    assert passed.outcome == "passed"
    assert [s.scorer for s in passed.scores] == ["days", "exact"]  # the case's order
    assert passed.scores[0].reason == "states 30 days"

    case = make_case(team.parse_spec({"days": {"days": 14}}), exact)
    failed = finish(arrived(case, built_in), case)
    assert failed.outcome == "failed"
    assert [(s.scorer, s.passed) for s in failed.scores] == [("days", False), ("exact", True)]
    assert failed.deciding_score is not None
    assert failed.deciding_score.reason == "does not state 14 days"


def test_a_built_in_failure_is_not_rescued_by_a_team_pass(team: ScorerRegistry) -> None:
    case = make_case(team.parse_spec({"days": {"days": 30}}), team.parse_spec("exact"))
    wrong = Score("exact", 0.0, False, "output differs", threshold=1.0)
    assert score_team_scorers(team, arrived(case, wrong), case).outcome == "failed"


@pytest.mark.parametrize(
    ("score", "error"),
    [
        (RuntimeError("the domain service is down"), "scorer 'boom' raised RuntimeError: "),
        (ScorerError("no catalogue entry"), "scorer 'boom': no catalogue entry"),
        (0.5, "scorer 'boom' returned number 0.5, expected a Score"),
        (Score("boom", 1.5, True, ""), "scorer 'boom' returned a score of 1.5, outside 0..1"),
    ],
)
def test_a_team_scorer_that_raises_makes_an_error_outcome(
    team: ScorerRegistry, score: object, error: str
) -> None:
    def boom(options: Mapping[str, Any], output: str, case: GoldenCase) -> Score:
        if isinstance(score, Exception):
            raise score
        return score  # type: ignore[return-value]

    team.register("boom")(boom)
    case = make_case(team.parse_spec("exact"), team.parse_spec("boom"))
    built_in = Score("exact", 1.0, True, "output equals the reference", threshold=1.0)
    result = score_team_scorers(team, arrived(case, built_in), case)
    assert result.outcome == "error"
    assert result.error_kind == "scorer"
    assert result.error is not None
    assert result.error.startswith(f"scoring failed: {error}")
    assert result.scores == (built_in,)  # what was scored before it


def test_results_that_need_nothing_more_are_left_alone(team: ScorerRegistry) -> None:
    built_in = Score("exact", 1.0, True, "equal", threshold=1.0)
    plain = make_case(team.parse_spec("exact"))
    result = arrived(plain, built_in)
    assert score_team_scorers(team, result, plain) is result
    mixed = make_case(team.parse_spec({"days": {"days": 30}}))
    errored = CaseResult(
        case_id="refund", nodeid="n", path="p", line=1, outcome="error", threshold=0.85,
        error="model call failed: boom", error_kind="server",
    )  # fmt: skip
    assert score_team_scorers(team, errored, mixed) is errored


def test_while_recording_a_team_scorer_that_needs_the_reference_is_left_out() -> None:
    registry = team_registry()
    registry.register("near", needs_reference=True)(days_scorer)  # would raise: no 'days'
    case = make_case(
        registry.parse_spec("near"), registry.parse_spec({"days": {"days": 30}}), reference=None
    )
    record = Score("record", 1.0, True, "reference recorded from m")
    result = CaseResult(
        case_id=case.id, nodeid="n", path=case.path, line=1, outcome="passed",
        threshold=0.85, scores=(record,), output="It takes 14 days.", recorded=True,
    )  # fmt: skip
    finished = score_team_scorers(registry, result, case)
    assert [s.scorer for s in finished.scores] == ["record", "days"]
    assert finished.outcome == "failed"
    assert finished.recorded is False  # an output that failed is not recorded


# -- a real runner process -----------------------------------------------------------------------


def test_the_runner_passes_team_scorers_through_and_the_client_finishes(
    make_server: MakeServer, start_runner: StartRunner, team: ScorerRegistry
) -> None:
    server = make_server(
        {
            "models": {
                CANDIDATE: {
                    "answers": [
                        {"match": "refund", "reply": "A refund takes 30 days."},
                        {"match": "exchange", "reply": "An exchange takes 3 days."},
                    ]
                }
            }
        }
    )
    process, _ = start_runner(
        endpoints=local_server_endpoints(server.url),
        candidate=parse_model(CANDIDATE),
        timeout=10,
        retries=0,
        preflight=False,
    )
    journal: list[CaseResult] = []
    journal_lock = threading.Lock()

    def on_result(result: CaseResult, compare: CaseResult | None) -> None:
        with journal_lock:
            journal.append(result)

    client = RunnerClient(
        process.address, on_result=on_result, finish=finish_with_team_scorers(team)
    )
    try:
        days = team.parse_spec({"days": {"days": 30}})
        contains = team.parse_spec({"contains": "days"})
        cases = [
            GoldenCase(
                id=topic,
                messages=(Message("user", f"How long does a {topic} take?"),),
                scorers=(contains, days),
                path="golden/g.jsonl",
                line=i + 1,
            )
            for i, topic in enumerate(["refund", "exchange"])
        ]
        client.submit([(case.id, case) for case in cases], lambda case: {})
        results = {case.id: client.result(case.id, case, lambda case: {})[0] for case in cases}
    finally:
        client.close()
    assert {k: r.outcome for k, r in results.items()} == {"refund": "passed", "exchange": "failed"}
    assert [s.scorer for s in results["exchange"].scores] == ["contains", "days"]
    assert results["exchange"].failing_scores[0].reason == "does not state 30 days"
    with journal_lock:
        assert sorted(journal, key=lambda r: r.case_id) == [
            results["exchange"],
            results["refund"],
        ]  # journaled as finished, before the futures resolved


# -- the hook, end to end ------------------------------------------------------------------------

CONFTEST = """
from pytest_llmregress.scoring.score import Score, ScorerError


def pytest_llmregress_register_scorers(registry):
    @registry.register("days", options=("days",))
    def days(options, output, case):
        ok = f"{options['days']} days" in output
        reason = f"states {options['days']} days" if ok else f"no {options['days']} days"
        return Score("days", float(ok), ok, reason, threshold=1.0)

    @registry.register("catalogue")
    def catalogue(options, output, case):
        raise RuntimeError("the catalogue service is down")
"""


def refund_cases(*scorers: object) -> list[dict[str, Any]]:
    return [
        {"id": f"refund-{days}", "user": f"refund in {days}?", "scorers": list(scorers)}
        for days in (30, 14)
    ]


def refund_server(make_server: MakeServer) -> LocalProviderServer:
    answers = [{"match": "refund in", "reply": "A refund takes 30 days."}]
    return make_server({"models": {CANDIDATE: {"answers": answers}}})


def test_the_hook_fills_the_session_registry(pytester: pytest.Pytester) -> None:
    """Needs no wiring: ``session_scorers`` itself, from a test body."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_registry="""
        from pytest_llmregress.hookspecs import session_scorers
        from pytest_llmregress.scoring.registry import active_scorers

        def test_registry(pytestconfig):
            registry = session_scorers(pytestconfig)
            assert registry.names[-2:] == ("days", "catalogue")
            assert active_scorers() is registry
            assert registry.parse_spec({"days": {"days": 3}}).in_pytest
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=1)


def test_a_conftest_scorer_decides_golden_cases(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    run_mode: list[str],
) -> None:
    """Waits for the session's wiring (``session_scorers``, ``RunnerClient(finish=...)``)."""
    pytester.makeconftest(CONFTEST)
    cases = [
        {
            "id": f"refund-{days}",
            "user": f"refund in {days}?",
            "scorers": [{"days": {"days": days}}],
        }
        for days in (30, 14)
    ]
    write_cases(pytester, "team.jsonl", cases)
    provider_env(refund_server(make_server))
    result = pytester.runpytest(f"--llm-model={CANDIDATE}", *run_mode)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["golden case 'refund-14' * failed: *", "  FAIL days: 0.00 (threshold 1.00): no 14 days"]
    )


def test_a_plugin_module_registers_scorers_like_an_entry_point(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    """A team's own package: its pytest11 plugin is loaded as ``-p`` loads it.
    Waits for the session's wiring."""
    pytester.makepyfile(team_scorers=CONFTEST)
    pytester.syspathinsert()
    write_cases(pytester, "team.jsonl", refund_cases({"days": {"days": 30}}))
    provider_env(refund_server(make_server))
    result = pytester.runpytest("-p", "team_scorers", f"--llm-model={CANDIDATE}")
    result.assert_outcomes(passed=2)


def test_a_raising_team_scorer_is_an_error_outcome(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    """Waits for the session's wiring."""
    pytester.makeconftest(CONFTEST)
    write_cases(pytester, "team.jsonl", refund_cases({"days": {"days": 30}}, "catalogue"))
    provider_env(refund_server(make_server))
    result = pytester.runpytest(f"--llm-model={CANDIDATE}", "--llm-max-error-rate=1")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        ["*scoring failed: scorer 'catalogue' raised RuntimeError: the catalogue service is down*"]
    )


def test_an_unknown_scorer_is_a_collection_error_at_its_field(pytester: pytest.Pytester) -> None:
    """Waits for the session's wiring (the team's names in the message)."""
    pytester.makeconftest(CONFTEST)
    write_cases(pytester, "team.jsonl", refund_cases({"dayz": {"days": 30}}))
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*golden_cases/team.jsonl:1: case 'refund-30': field 'scorers?0?': unknown scorer "
            "'dayz' (expected one of: judge, exact, contains, regex, json, similarity, days, "
            "catalogue); did you mean 'days'?*"
        ]
    )


def test_a_sub_folder_conftest_registers_before_its_golden_files_load(
    pytester: pytest.Pytester,
) -> None:
    """The hook is historic. Waits for the session's wiring."""
    write_cases(pytester, "team.jsonl", refund_cases({"days": {"days": 30}}))
    (pytester.path / "golden_cases" / "conftest.py").write_text(CONFTEST)
    result = pytester.runpytest("--collect-only", "-q")
    result.assert_outcomes()
    result.stdout.fnmatch_lines(["golden_cases/team.jsonl::refund-30", "*2 tests collected*"])
