"""The ``llm`` fixture's client against the local server over HTTP, the ``llm_case`` marker, and
the ``CaseResult`` a test that is a case produces."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from typing import Any, Literal

import pytest

from pytest_llmregress.collect.llm_fixture import (
    CaseOptions,
    CaseOptionsError,
    JudgedVerdict,
    LLMCallError,
    LLMClient,
    LLMOutput,
    ModelCall,
    case_id,
    case_options,
    case_record,
    case_result,
    current_case,
    judging,
)
from pytest_llmregress.providers.base import ChatMessage, Completion, Request
from pytest_llmregress.providers.registry import local_server_endpoints, parse_model
from pytest_llmregress.scoring.score import Score
from pytest_llmregress.testing.server import LocalProviderServer
from tests.conftest import CANDIDATE

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]


@pytest.fixture
def server(make_server: MakeServer) -> LocalProviderServer:
    return make_server(
        {
            "models": {
                CANDIDATE: {
                    "answers": [{"match": "refund", "reply": "Refunds within 30 days."}],
                    "errors": [{"status": 404, "match": "retired please"}],
                    "default_reply": "I don't know.",
                }
            }
        }
    )


@pytest.fixture
def llm(server: LocalProviderServer, start_runner: Callable[..., Any]) -> LLMClient:
    """The client the ``llm`` fixture gives, calling through a real runner process."""
    candidate = parse_model(CANDIDATE)
    _, runner = start_runner(
        endpoints=local_server_endpoints(server.url),
        candidate=candidate,
        timeout=5,
        retries=0,
        preflight=False,
    )
    return LLMClient(runner.complete_sync, model=candidate.model, name=str(candidate))


def test_complete_returns_the_answer_as_a_str_with_its_completion(
    llm: LLMClient, server: LocalProviderServer
) -> None:
    out = llm.complete(system="Be brief.", user="Can I get a refund?", max_tokens=50, temperature=0)

    assert isinstance(out, LLMOutput)
    assert out == "Refunds within 30 days."
    assert out.upper() == "REFUNDS WITHIN 30 DAYS."
    assert "30 days" in out
    assert out.completion.provider == "anthropic"
    assert out.completion.resolved_model == CANDIDATE
    assert out.completion.output_tokens > 0
    copy = pickle.loads(pickle.dumps(out))
    assert (copy, copy.completion) == (out, out.completion)
    [sent] = server.requests
    assert (sent.system, sent.user_text) == ("Be brief.", "Can I get a refund?")
    assert sent.params["max_tokens"] == 50
    [call] = llm.record.calls
    assert call.request.params == {"max_tokens": 50, "temperature": 0}
    assert call.completion == out.completion
    assert llm.record.task == "Can I get a refund?"


def test_messages_are_a_conversation_that_user_continues(
    llm: LLMClient, server: LocalProviderServer
) -> None:
    out = llm.complete(
        messages=[
            {"role": "user", "content": "Hello"},
            ChatMessage("assistant", "Hi, how can I help?"),
        ],
        user="I want a refund.",
    )
    assert out == "Refunds within 30 days."
    [call] = llm.record.calls
    assert [m.role for m in call.request.messages] == ["user", "assistant", "user"]
    assert call.request.system is None
    assert server.requests[0].user_text == "I want a refund."


def test_a_failed_call_is_an_llm_call_error_kept_in_the_record(llm: LLMClient) -> None:
    with pytest.raises(LLMCallError, match=r"model call failed: anthropic:.*HTTP 404") as info:
        llm.complete(user="retired please")
    assert info.value.kind == "not_found"
    assert info.value.error.status == 404
    assert info.value.__cause__ is None
    assert llm.record.calls == []
    assert str(llm.record.error).startswith("model call failed")
    assert llm.record.error_kind == "not_found"


def never_called(request: Request) -> Completion:
    raise AssertionError("no request should be sent")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, TypeError, "complete() needs user=... or messages=[...]"),
        ({"user": "  "}, ValueError, "user: expected a non-empty string, got string '  '"),
        ({"user": "q", "system": 3}, TypeError, "system: expected a string, got integer 3"),
        ({"messages": "hi"}, TypeError, "messages: expected a list of"),
        (
            {"messages": [{"role": "system", "content": "x"}], "user": "q"},
            ValueError,
            "messages[0]: role 'system' is not allowed in messages; pass system=... instead",
        ),
        (
            {"messages": [{"role": "bot", "content": "x"}]},
            ValueError,
            "messages[0].role: expected 'user' or 'assistant', got 'bot'",
        ),
        (
            {"messages": [{"role": "user", "text": "x"}]},
            ValueError,
            "messages[0]: unknown key 'text' (expected: role, content)",
        ),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            ValueError,
            "the last message must have role 'user', got 'assistant'",
        ),
        (
            {"user": "q", "max_token": 5},
            TypeError,
            "complete() got an unexpected parameter 'max_token' (request parameters: max_tokens, "
            "temperature, top_p, top_k, stop, seed); did you mean 'max_tokens'?",
        ),
        ({"user": "q", "temperature": 3}, ValueError, "temperature: expected a number between"),
    ],
)
def test_bad_arguments_are_rejected_before_any_call(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    client = LLMClient(never_called, model="m")
    with pytest.raises(error, match=re.escape(message)):
        client.complete(**kwargs)
    assert client.record.calls == []


# -- the llm_case marker ------------------------------------------------------------------------

MARKED = """
import pytest

pytestmark = pytest.mark.llm_case(tags=["support"], threshold=0.9)


def test_module_defaults():
    pass


@pytest.mark.llm_case(threshold=0.5, tags=["refunds", "support"], id="refund-window")
def test_closest_wins():
    pass


@pytest.mark.llm_case(id="return-item")
@pytest.mark.parametrize(
    "item", ["boots", pytest.param("skis", marks=pytest.mark.llm_case(threshold=1))]
)
def test_param(item):
    pass


@pytest.mark.llm_case(tags=["klass"])
class TestGroup:
    @pytest.mark.llm_case(tags=["inner"])
    def test_in_class(self):
        pass


@pytest.mark.llm_case(id="group")
class TestBadId:
    def test_x(self):
        pass


@pytest.mark.llm_case(0.9, thresold=2, tags="billing")
def test_many_problems():
    pass


@pytest.mark.llm_case(threshold=1.5, tags=["skip", "not", "ok tag"], id="no spaces")
def test_bad_values():
    pass


@pytest.mark.llm_case(threshold=True)
def test_bool_threshold():
    pass
"""


@pytest.fixture
def marked(pytester: pytest.Pytester) -> dict[str, pytest.Item]:
    pytester.makepyfile(test_marked=MARKED, test_plain="def test_plain():\n    pass\n")
    collected, _ = pytester.inline_genitems("-p", "no:cacheprovider")
    return {item.nodeid.partition("::")[2]: item for item in collected}


def test_llm_case_options_merge_from_the_test_up(marked: dict[str, pytest.Item]) -> None:
    assert case_options(marked["test_module_defaults"]) == CaseOptions(0.9, ("support",), None)
    assert case_options(marked["test_closest_wins"]) == CaseOptions(
        0.5, ("support", "refunds"), "refund-window"
    )
    assert case_options(marked["test_param[boots]"]) == CaseOptions(
        0.9, ("support",), "return-item"
    )
    assert case_options(marked["test_param[skis]"]).threshold == 1.0
    assert case_options(marked["TestGroup::test_in_class"]).tags == ("support", "klass", "inner")


def test_case_ids(marked: dict[str, pytest.Item]) -> None:
    def cid(name: str) -> str:
        return case_id(marked[name], case_options(marked[name]))

    assert cid("test_module_defaults") == "test_module_defaults"
    assert cid("test_closest_wins") == "refund-window"
    assert cid("test_param[boots]") == "return-item[boots]"
    assert cid("TestGroup::test_in_class") == "TestGroup::test_in_class"


@pytest.mark.parametrize(
    ("name", "problems"),
    [
        (
            "TestBadId::test_x",
            [
                "id: an id names one test; set it on the test function, not on a class "
                "(on the class TestBadId)"
            ],
        ),
        (
            "test_many_problems",
            [
                "takes keyword arguments only (threshold=, tags=, id=), got positional number 0.9",
                "unknown option 'thresold' (expected: threshold, tags, id); did you mean "
                "'threshold'?",
                "tags: expected a list of strings, got string 'billing'; write tags=['billing']",
            ],
        ),
        (
            "test_bad_values",
            [
                "threshold: expected a number between 0 and 1, got 1.5",
                "tags[0]: tag 'skip' is a built-in pytest marker",
                "tags[1]: tag 'not' is a keyword of pytest's -m expressions",
                "tags[2]: invalid tag 'ok tag'",
                "id: invalid id 'no spaces'",
            ],
        ),
        ("test_bool_threshold", ["threshold: expected a number between 0 and 1, got boolean"]),
    ],
)
def test_invalid_markers_name_the_test_and_every_problem(
    marked: dict[str, pytest.Item], name: str, problems: list[str]
) -> None:
    with pytest.raises(CaseOptionsError) as info:
        case_options(marked[name])
    message = str(info.value)
    assert message.startswith(f"test_marked.py::{name}: invalid @pytest.mark.llm_case: ")
    for problem in problems:
        assert problem in message


# -- the case result -----------------------------------------------------------------------------


def report_for(
    item: pytest.Item, outcome: Literal["passed", "failed", "skipped"], longrepr: str | None = None
) -> pytest.TestReport:
    return pytest.TestReport(
        item.nodeid, item.location, {}, outcome, longrepr, "call", duration=0.25
    )


def completion(text: str) -> Completion:
    return Completion(text=text, provider="anthropic", requested_model="m", resolved_model="m-1")


def test_only_tests_that_are_cases_have_a_result(marked: dict[str, pytest.Item]) -> None:
    plain = marked["test_plain"]
    assert case_result(plain, report_for(plain, "passed")) is None
    case_record(plain)  # it called the model
    assert case_result(plain, report_for(plain, "passed")) is not None
    assert case_result(plain, report_for(plain, "skipped", "skipped")) is None
    marked_only = marked["test_module_defaults"]  # carries llm_case, made no call
    result = case_result(marked_only, report_for(marked_only, "passed"))
    assert result is not None
    assert (result.outcome, result.scores) == ("passed", ())


def test_case_result_of_a_judged_test(marked: dict[str, pytest.Item]) -> None:
    item = marked["test_closest_wins"]
    record = case_record(item)
    request = Request(model="m", messages=(ChatMessage("user", "Can I get a refund?"),))
    record.calls.append(ModelCall(request, completion("Refunds within 30 days.")))
    score = Score("judge", 0.92, True, "close", threshold=0.5, judge_model="openai:j")
    record.verdicts.append(JudgedVerdict("Refunds within 30 days.", "Refunds: 30 days.", score))

    result = case_result(item, report_for(item, "passed"))

    assert result is not None
    assert (result.case_id, result.path, result.outcome) == (
        "refund-window",
        "test_marked.py",
        "passed",
    )
    assert result.line == 10  # the first decorator, as pytest reports it
    assert (result.threshold, result.tags) == (0.5, ("support", "refunds"))
    assert result.scores == (score,)
    assert (result.output, result.reference) == ("Refunds within 30 days.", "Refunds: 30 days.")
    assert result.completion == record.calls[0].completion
    assert result.duration_s == 0.25
    assert result.to_dict()["case_id"] == "refund-window"


def test_a_failed_assert_is_an_assertions_score_and_a_failed_call_an_error(
    marked: dict[str, pytest.Item],
) -> None:
    item = marked["test_module_defaults"]
    failed = case_result(item, report_for(item, "failed", "long text\nE   assert '30' in 'x'"))
    assert failed is not None
    assert failed.outcome == "failed"
    [score] = failed.scores
    assert (score.scorer, score.value, score.passed) == ("assertions", 0.0, False)
    assert score.reason == "E   assert '30' in 'x'"

    case_record(item).note_error("model call failed: boom", "server")
    errored = case_result(item, report_for(item, "failed", "LLMCallError"))
    assert errored is not None
    assert (errored.outcome, errored.error, errored.error_kind) == (
        "error",
        "model call failed: boom",
        "server",
    )
    assert errored.scores == ()


def test_judging_sets_the_current_case_for_the_test_body(marked: dict[str, pytest.Item]) -> None:
    item = marked["test_closest_wins"]
    outer = current_case()  # the plugin wraps this very test in its own context
    assert outer is not None
    with judging(item, None) as case:
        assert current_case() is case
        assert (case.item, case.judge, case.update) == (item, None, False)
        assert case.options().threshold == 0.5
    assert current_case() is outer
