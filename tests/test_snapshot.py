"""Golden cases written as tests with judged syrupy references, end to end: pytester runs the
real SDK clients over HTTP against the local provider server."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from pytest_llmregress.collect.llm_fixture import JudgedVerdict, ModelCall, case_record, judging
from pytest_llmregress.collect.snapshot import JudgedReference, JudgedText, explain_judged
from pytest_llmregress.providers.base import ChatMessage, Completion, Request
from pytest_llmregress.scoring.score import Score
from pytest_llmregress.testing.server import LocalProviderServer
from tests.conftest import CANDIDATE, JUDGE

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]

DRIFTED = "claude-opus-5"

SUPPORT_TESTS = """
import pytest

from pytest_llmregress.collect.snapshot import JudgedReference

SYSTEM = "You are a support agent for Borealis Outdoor."


def test_refund_policy(llm, snapshot):
    out = llm.complete(system=SYSTEM, user="Can I return shoes after 40 days?")
    assert out == snapshot(extension_class=JudgedReference)


@pytest.mark.parametrize("item", ["boots", "tents", "socks"])
def test_return_item(llm, snapshot, item):
    out = llm.complete(system=SYSTEM, user=f"How do I return {item}?", max_tokens=200)
    assert out == snapshot(extension_class=JudgedReference)
"""

REFUND = "You can return unworn shoes within 30 days of delivery."
ITEMS = ("boots", "tents", "socks")


def how_to_return(item: str) -> str:
    return f"Pack the {item} in their box and print a label from your orders page."


def support_scenario(**drifted: str) -> dict[str, Any]:
    """The candidate answers the support prompts; DRIFTED answers them too, or as given."""
    answers = [{"match": "return shoes", "reply": REFUND}] + [
        {"match": f"return {item}", "reply": how_to_return(item)} for item in ITEMS
    ]
    changed = [{"match": match, "reply": reply} for match, reply in drifted.items()]
    return {
        "models": {
            CANDIDATE: {"answers": answers},
            DRIFTED: {"answers": changed + answers},
            JUDGE: {"judge": True},
        }
    }


def args(*extra: str, model: str = CANDIDATE, judge: bool = True) -> list[str]:
    chosen = [f"--llm-model={model}", "-p", "no:cacheprovider"]
    if judge:
        chosen.append(f"--llm-judge-model={JUDGE}")
    return [*chosen, *extra]


@pytest.fixture(autouse=True)
def _inner_runs_are_not_xdist_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """syrupy reads PYTEST_XDIST_WORKER to tell a worker (which prints no snapshot report);
    when this suite runs under xdist, the in-process pytester runs must not inherit it."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def judge_calls(server: LocalProviderServer) -> int:
    return sum(1 for r in server.requests if r.requested_model == JUDGE)


GARDENING = "Sorry, I can only talk about gardening tools."
RECORDED = {
    "test_refund_policy.txt": REFUND,
    **{f"test_return_item[{item}].txt": how_to_return(item) for item in ITEMS},
}


def references(pytester: pytest.Pytester) -> dict[str, str]:
    folder = pytester.path / "__snapshots__" / "test_support"
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}


def write_references(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    """Reference files as ``--snapshot-update`` writes them (checked by the first test)."""
    folder = pytester.path / "__snapshots__" / "test_support"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def results(path: Path) -> dict[str, dict[str, Any]]:
    return {case["case_id"]: case for case in json.loads(path.read_text())["cases"]}


@pytest.fixture
def support(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> LocalProviderServer:
    """A pytester dir with the support tests, and a server where DRIFTED drifts on refunds."""
    pytester.makepyfile(test_support=SUPPORT_TESTS)
    server = make_server(support_scenario(**{"return shoes": GARDENING}))
    provider_env(server)
    return server


def test_snapshot_update_records_readable_references_without_the_judge(
    pytester: pytest.Pytester, support: LocalProviderServer
) -> None:
    result = pytester.runpytest(*args("--snapshot-update"))

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*4 snapshots generated.*"])
    assert references(pytester) == RECORDED
    assert judge_calls(support) == 0
    candidate = [r for r in support.requests if r.requested_model == CANDIDATE]
    assert sorted(str(r.user_text) for r in candidate) == sorted(
        ["Can I return shoes after 40 days?", *(f"How do I return {i}?" for i in ITEMS)]
    )
    assert {r.system for r in candidate} == {"You are a support agent for Borealis Outdoor."}
    # Recording is never a verdict: the recorded cases are not passes.
    result.stdout.fnmatch_lines(
        [f"RECORDED: 4 references from anthropic:{CANDIDATE}; no verdict on the model*"]
    )
    assert "PASSED:" not in result.stdout.str()


def test_snapshot_update_with_a_drifted_model_records_and_gives_no_verdict(
    pytester: pytest.Pytester, support: LocalProviderServer
) -> None:
    write_references(pytester, RECORDED)
    result = pytester.runpytest(*args("--snapshot-update", "--llm-report=r.json", model=DRIFTED))

    assert references(pytester)["test_return_item[boots].txt"] == how_to_return("boots")
    assert references(pytester)["test_refund_policy.txt"] == GARDENING  # rewritten
    out = result.stdout.str()
    assert "PASSED:" not in out
    assert "FAILED:" not in out
    # One reference changed; the three that equal their stored reference are real passes.
    result.stdout.fnmatch_lines(
        [
            f"RECORDED: 1 references from anthropic:{DRIFTED}; no verdict on the model*",
            "judged, not recorded: 3 passed, 0 failed, 0 errors*",
        ]
    )
    verdict = json.loads((pytester.path / "r.json").read_text())["metadata"]["verdict"]
    assert verdict["ok"] is None
    assert (verdict["recorded"], verdict["passed"]) == (1, 3)


def test_judge_passes_close_outputs_and_fails_drifted_ones_with_score_reason_and_diff(
    pytester: pytest.Pytester, support: LocalProviderServer
) -> None:
    write_references(pytester, RECORDED)
    report = pytester.path / "results.json"

    result = pytester.runpytest(*args(f"--llm-report={report}", model=DRIFTED))

    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert judge_calls(support) == 4
    result.stdout.fnmatch_lines(
        [
            ">*assert out == snapshot(extension_class=JudgedReference)",
            "E       assert ?+ received? == ?- snapshot?",
            "E*judged reference __snapshots__/test_support/test_refund_policy.txt: score 0.28 "
            "is below the threshold 0.85",
            f"E*judge openai:{JUDGE}: The candidate differs from the reference*",
            f"E*- {REFUND}",
            f"E*+ {GARDENING}",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*1 snapshot failed. 3 snapshots passed.*",
            f"FAILED: anthropic:{DRIFTED} on 4 golden cases",
            "pass rate 75.0% *",
        ]
    )
    assert references(pytester) == RECORDED  # a failing run leaves the references alone
    cases = results(report)
    assert set(cases) == {"test_refund_policy", *(f"test_return_item[{i}]" for i in ITEMS)}
    failed = cases["test_refund_policy"]
    assert failed["outcome"] == "failed"
    assert (failed["path"], failed["line"]) == ("test_support.py", 8)
    assert failed["reference"] == REFUND
    assert failed["output"] == GARDENING
    assert failed["completion"]["resolved_model"] == DRIFTED
    [score] = failed["scores"]
    assert score["scorer"] == "judge"
    assert score["value"] == pytest.approx(0.28)
    assert score["threshold"] == 0.85
    assert score["judge_model"] == f"openai:{JUDGE}"
    assert cases["test_return_item[boots]"]["outcome"] == "passed"
    assert cases["test_return_item[boots]"]["scores"][0]["value"] == 1.0


MARKED_TESTS = """
import pytest

from pytest_llmregress.collect.snapshot import JudgedReference

pytestmark = pytest.mark.llm_case(tags=["support"], threshold=0.9)


@pytest.mark.llm_case(threshold=0.5, tags=["refunds"], id="refund-window")
def test_refund_policy(llm, snapshot):
    out = llm.complete(user="Can I return shoes after 40 days?")
    assert out == snapshot(extension_class=JudgedReference)


def test_strict(llm, snapshot):
    out = llm.complete(user="Can I return shoes after 40 days?")
    assert out == snapshot(extension_class=JudgedReference)


@pytest.mark.llm_case(id="return-item")
@pytest.mark.parametrize("item", ["boots"])
def test_return_item(llm, snapshot, item):
    judged = snapshot.use_extension(JudgedReference)
    assert llm.complete(user=f"How do I return {item}?") == judged
"""


def test_llm_case_marker_sets_threshold_tags_and_id(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    pytester.makepyfile(test_support=MARKED_TESTS)
    write_references(
        pytester,
        {
            "test_refund_policy.txt": REFUND,
            "test_strict.txt": REFUND,
            "test_return_item[boots].txt": how_to_return("boots"),
        },
    )
    # DRIFTED answers the refund prompt with a partial match: similarity 0.56.
    partial = "Returns of unworn shoes are accepted for 60 days after purchase."
    provider_env(make_server(support_scenario(**{"return shoes": partial})))
    report = pytester.path / "results.json"

    result = pytester.runpytest(*args(f"--llm-report={report}", model=DRIFTED))

    # 0.56 passes the test's own threshold 0.5, and fails the module's 0.9.
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_strict.txt: score 0.56 is below the threshold 0.90"])
    cases = results(report)
    assert set(cases) == {"refund-window", "test_strict", "return-item[boots]"}
    assert cases["refund-window"]["outcome"] == "passed"
    assert cases["refund-window"]["threshold"] == 0.5
    assert cases["refund-window"]["tags"] == ["support", "refunds"]
    assert cases["test_strict"]["outcome"] == "failed"
    assert cases["test_strict"]["threshold"] == 0.9
    assert cases["test_strict"]["tags"] == ["support"]
    assert cases["return-item[boots]"]["outcome"] == "passed"


def test_failed_judge_call_is_an_error_not_a_verdict(
    pytester: pytest.Pytester, support: LocalProviderServer
) -> None:
    write_references(pytester, RECORDED)
    # The judge's prompt carries the task: only the refund case's judge call fails.
    support.update_model(JUDGE, errors=[{"status": 400, "match": "return shoes"}])

    result = pytester.runpytest(*args("--llm-max-error-rate=0.5"))

    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*the judged reference could not be scored: judge call failed: "
            f"openai:{JUDGE}: HTTP 400 bad_request*",
        ]
    )
    result.stdout.fnmatch_lines(["3 passed, 0 failed, 1 errors*"])


ERROR_TESTS = """
import pytest


@pytest.mark.llm_case(treshold=2)
def test_bad_marker(llm):
    pass


def test_model_call_fails(llm):
    llm.complete(user="Trigger a 404, please.")
"""


def test_missing_judge_reference_marker_and_model_are_clear_errors(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    pytester.makepyfile(test_support=SUPPORT_TESTS, test_errors=ERROR_TESTS)
    write_references(pytester, {"test_refund_policy.txt": REFUND})
    scripted = support_scenario()
    scripted["models"][CANDIDATE]["errors"] = [{"status": 404, "match": "trigger a 404"}]
    provider_env(make_server(scripted))

    result = pytester.runpytest(*args("--llm-retries=0", "--llm-preflight=off", judge=False))

    result.assert_outcomes(failed=3, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*no judge model is set: run with --llm-judge-model=ID (or record references "
            "with --snapshot-update)"
        ]
    )
    result.stdout.fnmatch_lines(["*Snapshot 'test_return_item?boots?' does not exist!*"])
    result.stdout.fnmatch_lines(
        [
            "*test_errors.py::test_bad_marker: invalid @pytest.mark.llm_case: unknown option "
            "'treshold' (expected: threshold, tags, id); did you mean 'threshold'?"
        ]
    )
    result.stdout.fnmatch_lines(["*LLMCallError: model call failed: anthropic:*HTTP 404*"])


def test_records_and_judges_under_xdist(
    pytester: pytest.Pytester, support: LocalProviderServer
) -> None:
    """Two workers: two cases are judged, two record their reference (new-only update)."""
    recorded = {
        name: RECORDED[name] for name in ("test_refund_policy.txt", "test_return_item[boots].txt")
    }
    write_references(pytester, recorded)

    result = pytester.runpytest(*args("-n", "2", "--snapshot-update-new-only", model=DRIFTED))

    result.assert_outcomes(passed=3, failed=1)
    assert judge_calls(support) == 2
    assert references(pytester) == RECORDED
    result.stdout.fnmatch_lines(
        [
            "*test_refund_policy.txt: score 0.28 is below the threshold 0.85",
            "*1 snapshot failed. 1 snapshot passed. 2 snapshots generated.*",
            f"FAILED: anthropic:{DRIFTED} on 4 golden cases",
        ]
    )


def test_unused_references_are_reported(
    pytester: pytest.Pytester, support: LocalProviderServer
) -> None:
    write_references(pytester, {**RECORDED, "test_return_item[skis].txt": "Skis: see a store."})

    result = pytester.runpytest(*args())

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*4 snapshots passed. 1 snapshot unused.*",
            "Re-run pytest with --snapshot-update to delete unused snapshots.",
        ]
    )


# -- the extension's decisions, without a pytest run ---------------------------------------------


class FakeJudge:
    """Scores by equality; remembers what it was asked."""

    def __init__(self, value: float = 0.5) -> None:
        self.value = value
        self.calls: list[dict[str, Any]] = []

    def __call__(self, output: str, reference: str, *, threshold: float, task: str) -> Score:
        self.calls.append({"output": output, "reference": reference, "task": task})
        value = 1.0 if output == reference else self.value
        return Score("judge", value, value >= threshold, "fake", threshold, "fake:judge")


def test_matches_judges_with_the_case_threshold_and_task(request: pytest.FixtureRequest) -> None:
    item = request.node
    record = case_record(item)
    task = Request(model="m", messages=(ChatMessage("user", "Can I return shoes?"),))
    record.calls.append(ModelCall(task, Completion("x", "anthropic", "m", "m")))
    judge = FakeJudge(value=0.84)
    extension = JudgedReference()
    output = extension.serialize("Returns: 30 days.")
    assert isinstance(output, JudgedText)

    with judging(item, judge, update=False):
        assert not extension.matches(serialized_data=output, snapshot_data=REFUND)
        assert extension.matches(serialized_data=JudgedText(REFUND), snapshot_data=REFUND)

    assert judge.calls[0] == {
        "output": "Returns: 30 days.",
        "reference": REFUND,
        "task": "Can I return shoes?",
    }
    assert output.verdict is not None
    assert (output.verdict.score.value, output.verdict.score.threshold) == (0.84, 0.85)
    assert [v.passed for v in record.verdicts] == [False, True]


def test_recording_compares_strings_and_never_calls_the_judge(
    request: pytest.FixtureRequest,
) -> None:
    judge = FakeJudge()
    extension = JudgedReference()
    with judging(request.node, judge, update=True):
        assert extension.matches(serialized_data=JudgedText(REFUND), snapshot_data=REFUND)
        assert not extension.matches(serialized_data=JudgedText("new"), snapshot_data=REFUND)
    assert judge.calls == []


def test_without_the_plugin_or_a_judge_the_comparison_fails_with_a_reason(
    request: pytest.FixtureRequest,
) -> None:
    extension = JudgedReference()

    def outside_the_plugin() -> None:
        with pytest.raises(pytest.fail.Exception, match="not active in this test run"):
            extension.matches(serialized_data=JudgedText("a"), snapshot_data="b")

    # The plugin wraps every test in its judging context; an empty context is "no plugin".
    contextvars.Context().run(outside_the_plugin)
    with (
        judging(request.node, None, update=False),
        pytest.raises(pytest.fail.Exception, match="run with --llm-judge-model=ID"),
    ):
        extension.matches(serialized_data=JudgedText("a"), snapshot_data="b")
    assert case_record(request.node).error_kind == "no_judge"
    with pytest.raises(TypeError, match=r"JudgedReference stores text: .* got dict"):
        extension.serialize({"a": 1})


def test_explain_judged_adds_the_verdict_once_and_leaves_other_comparisons_alone() -> None:
    text = JudgedText("out")
    text.verdict = JudgedVerdict(
        "out", "ref", Score("judge", 0.4, False, "too far", 0.85, "openai:judge")
    )
    result = SimpleNamespace(success=False, asserted_data=text, snapshot_location="a/b.txt")
    assertion = object.__new__(SnapshotAssertion)
    object.__setattr__(assertion, "_executions", 1)
    object.__setattr__(assertion, "_execution_results", {0: result})
    lines = ["[+ received] == [- snapshot]", "- ref", "+ out"]

    explained = explain_judged("out", assertion, lines)

    assert explained == [
        lines[0],
        "judged reference a/b.txt: score 0.40 is below the threshold 0.85",
        "judge openai:judge: too far",
        *lines[1:],
    ]
    assert explain_judged("out", assertion, explained) == explained
    assert explain_judged("a", "b", lines) == lines
    result.success = True
    assert explain_judged("out", assertion, lines) == lines
