"""--llm-record: references written into golden files from a validated run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.cases.golden import load_cases
from pytest_llmregress.testing.server import LocalProviderServer
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import model_args

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]

JSONL = """\
// support answers; the first two have no reference yet
{"id": "a", "user": "question a", "tags": ["support"]}
{"id": "b", "user": "question b", "reference": null}
{"id": "c", "user": "question c", "reference": "kept as it is"}
"""

YAML = """\
# summaries
defaults:
  system: Summarize.
cases:
  - id: s1   # first
    user: text one
  - id: s2
    user: text two
    reference: old summary
"""

REPLIES = {
    "question a": "Answer A.",
    "question b": "Answer B,\nover two lines.",
    "question c": "A new answer for c.",
    "text one": "Summary one.",
    "text two": "Summary two.",
}


def server_for(make_server: MakeServer) -> LocalProviderServer:
    rules = [{"match": user, "reply": reply} for user, reply in REPLIES.items()]
    return make_server({"models": {CANDIDATE: {"answers": rules}, JUDGE: {"judge": True}}})


@pytest.fixture
def golden(pytester: pytest.Pytester) -> dict[str, Any]:
    folder = pytester.path / "golden_cases"
    folder.mkdir()
    (folder / "support.jsonl").write_text(JSONL)
    (folder / "summaries.yaml").write_text(YAML)
    return {"jsonl": folder / "support.jsonl", "yaml": folder / "summaries.yaml"}


def test_record_missing_fills_only_cases_without_a_reference(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, golden: Any
) -> None:
    server = server_for(make_server)
    provider_env(server)
    result = pytester.runpytest(*model_args("--llm-record=missing", "--llm-min-pass-rate=0"))
    # A recording run gives no verdict on the model: the three recorded cases are not passes,
    # and the two judged cases that failed fail the session as failed tests.
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "PASSED:" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            f"RECORDED: 3 references from anthropic:{CANDIDATE}; no verdict on the model*",
            "judged, not recorded: 0 passed, 2 failed, 0 errors*",
            "recorded: golden_cases/s*: 1 filled*",
            "recorded: golden_cases/s*: * filled*",
            "  review the new references with git diff before committing them",
        ]
    )
    jsonl = golden["jsonl"].read_text().splitlines()
    assert jsonl[0] == JSONL.splitlines()[0]  # the comment is kept
    assert jsonl[3] == JSONL.splitlines()[3]  # the case with a reference is untouched
    by_id = {case.id: case for case in load_cases(golden["jsonl"])}
    assert by_id["a"].reference == "Answer A."
    assert by_id["b"].reference == "Answer B,\nover two lines."
    assert by_id["c"].reference == "kept as it is"
    yaml_cases = {case.id: case for case in load_cases(golden["yaml"])}
    assert yaml_cases["s1"].reference == "Summary one."
    assert yaml_cases["s2"].reference == "old summary"
    assert "# summaries" in golden["yaml"].read_text()
    assert "- id: s1   # first" in golden["yaml"].read_text()
    # Recording a missing reference needs no judge call.
    judged = [r for r in server.requests if r.requested_model == JUDGE]
    assert len(judged) == 2  # c and s2 had references and were judged

    rerun = pytester.runpytest(*model_args("--llm-min-pass-rate=0"))
    rerun.assert_outcomes(passed=3, failed=2)


def test_record_all_replaces_existing_references(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, golden: Any
) -> None:
    provider_env(server_for(make_server))
    result = pytester.runpytest(*model_args("--llm-record=all"))
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"RECORDED: 5 references from anthropic:{CANDIDATE};*"])
    assert "PASSED:" not in result.stdout.str()
    assert {c.id: c.reference for c in load_cases(golden["jsonl"])}["c"] == "A new answer for c."
    assert {c.id: c.reference for c in load_cases(golden["yaml"])}["s2"] == "Summary two."
    pytester.runpytest(*model_args()).assert_outcomes(passed=5)


def test_without_record_nothing_is_written(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, golden: Any
) -> None:
    provider_env(server_for(make_server))
    before = golden["jsonl"].read_text(), golden["yaml"].read_text()
    result = pytester.runpytest(*model_args("--llm-max-error-rate=1", "--llm-min-pass-rate=0"))
    result.assert_outcomes(errors=3, failed=2)
    result.stdout.fnmatch_lines(
        ["  3 x scoring failed: the case has no reference to judge against*"]
    )
    assert (golden["jsonl"].read_text(), golden["yaml"].read_text()) == before


OWN_VALUES = """\
{"id": "value", "user": "question a", "scorers": [{"exact": {"value": "Answer A."}}]}
{"id": "wrong-value", "user": "question b", "scorers": [{"exact": "Answer C."}]}
{"id": "checks", "user": "question c", "scorers": [{"contains": "answer"}, {"regex": "c[.]$"}]}
{"id": "needs-one", "user": "text one", "scorers": ["exact"]}
"""


@pytest.mark.parametrize("mode", ["missing", "all"])
def test_recording_leaves_alone_cases_that_carry_their_own_expected_value(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, mode: str
) -> None:
    folder = pytester.path / "golden_cases"
    folder.mkdir()
    golden = folder / "own.jsonl"
    golden.write_text(OWN_VALUES)
    provider_env(server_for(make_server))
    result = pytester.runpytest(*model_args(f"--llm-record={mode}", "--llm-min-pass-rate=0"))
    # Only the case whose scorer compares with a reference is recorded; the others are
    # judged by their own expected values, as without recording.
    result.stdout.fnmatch_lines(
        [
            f"RECORDED: 1 references from anthropic:{CANDIDATE}; no verdict on the model*",
            "judged, not recorded: 2 passed, 1 failed, 0 errors*",
            "recorded: golden_cases/own.jsonl: 1 filled*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # wrong-value failed, as a test
    lines = golden.read_text().splitlines()
    assert lines[:3] == OWN_VALUES.splitlines()[:3]  # not a byte changed
    assert {case.id: case.reference for case in load_cases(golden)} == {
        "value": None,
        "wrong-value": None,
        "checks": None,
        "needs-one": "Summary one.",
    }
