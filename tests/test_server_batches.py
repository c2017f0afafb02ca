"""The local provider server's batch APIs, driven by the official SDKs over real HTTP:
Anthropic Message Batches and OpenAI Batch + Files (``testing/batches.py``)."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

from pytest_llmregress.testing.scenario import ScenarioError, load_scenario
from pytest_llmregress.testing.server import LocalProviderServer

JUDGE_PROMPT = (
    "<reference>Refunds within 30 days.</reference>\n<candidate>Refunds in 30 days.</candidate>"
)

SCENARIO: dict[str, Any] = {
    "aliases": {"claude-latest": "claude-sonnet-4-6"},
    "models": {
        "claude-sonnet-4-6": {
            "answers": [{"match": "refund", "reply": "Refunds within 30 days."}],
            "default_reply": "I don't know.",
            "drift": {"share": 0.5, "seed": 3, "reply": "Drifted."},
            "errors": [
                {"status": 500, "match": "flaky batch", "applies_to": "batch"},
                {"status": 529, "match": "flaky online"},
                {"status": 429, "match": "flaky anywhere", "applies_to": "both"},
            ],
        },
        "gpt-5-2026": {"system_fingerprint": "fp_1", "default_reply": "gpt says hi"},
        "judge": {"judge": True},
        "gpt-old": {"retired": True},
    },
}

ServerFactory = Callable[..., LocalProviderServer]


@pytest.fixture(scope="module")
def roots() -> Iterator[tuple[anthropic.Anthropic, openai.OpenAI]]:
    claude = anthropic.Anthropic(base_url="http://127.0.0.1:9", api_key="x", max_retries=0)
    gpt = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0)
    yield claude, gpt
    claude.close()
    gpt.close()


@pytest.fixture
def make_server() -> Iterator[ServerFactory]:
    started: list[LocalProviderServer] = []

    def factory(scenario: Any = SCENARIO) -> LocalProviderServer:
        server = LocalProviderServer(scenario).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: ServerFactory) -> LocalProviderServer:
    return make_server()


@pytest.fixture
def claude(
    server: LocalProviderServer, roots: tuple[anthropic.Anthropic, openai.OpenAI]
) -> anthropic.Anthropic:
    return roots[0].with_options(base_url=server.url)


@pytest.fixture
def gpt(
    server: LocalProviderServer, roots: tuple[anthropic.Anthropic, openai.OpenAI]
) -> openai.OpenAI:
    return roots[1].with_options(base_url=server.openai_base_url)


def params(text: str, model: str = "claude-sonnet-4-6", **extra: Any) -> Any:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def claude_batch(client: anthropic.Anthropic, texts: dict[str, str], **kw: Any) -> Any:
    return client.messages.batches.create(
        requests=[{"custom_id": cid, "params": params(text, **kw)} for cid, text in texts.items()]
    )


def results(client: anthropic.Anthropic, batch_id: str) -> dict[str, Any]:
    return {line.custom_id: line.result for line in client.messages.batches.results(batch_id)}


def chat_line(cid: str, text: str, model: str = "gpt-5-2026", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": cid,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}], **body},
    }


def upload(client: openai.OpenAI, lines: list[Any], purpose: str = "batch") -> Any:
    data = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    return client.files.create(file=("in.jsonl", data.encode()), purpose=purpose)  # type: ignore[arg-type]


def gpt_batch(client: openai.OpenAI, lines: list[Any], **kw: Any) -> Any:
    file = upload(client, lines)
    return client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h", **kw
    )


def file_lines(client: openai.OpenAI, file_id: str | None) -> dict[str, Any]:
    assert file_id is not None
    text = client.files.content(file_id).text
    return {line["custom_id"]: line for line in map(json.loads, text.splitlines())}


def admin(server: LocalProviderServer, method: str, path: str, body: Any = None) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=server.admin_headers)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        return json.loads(response.read())
    finally:
        connection.close()


# -- Anthropic Message Batches -----------------------------------------------------------------


def test_anthropic_batch_answers_as_the_online_requests_do(
    server: LocalProviderServer, claude: anthropic.Anthropic
) -> None:
    texts = {f"q{i}": f"question {i} about a refund" if i < 2 else f"other {i}" for i in range(6)}
    texts["judge"] = JUDGE_PROMPT
    batch = claude_batch(
        claude, {k: v for k, v in texts.items() if k != "judge"}, model="claude-latest"
    )
    judged = claude.messages.batches.create(
        requests=[{"custom_id": "judge", "params": params(JUDGE_PROMPT, model="judge")}]
    )
    assert batch.processing_status == "in_progress"
    assert batch.results_url is None
    assert batch.ended_at is None
    assert batch.request_counts.processing == 6
    assert batch.id.startswith("msgbatch_")
    assert batch.type == "message_batch"

    ended = claude.messages.batches.retrieve(batch.id)  # polls: 1 (the default)
    assert ended.processing_status == "ended"
    assert ended.request_counts.succeeded == 6
    assert ended.request_counts.processing == 0
    assert ended.ended_at is not None
    assert ended.results_url == f"{server.url}/v1/messages/batches/{batch.id}/results"
    lines = results(claude, batch.id) | results(claude, judged.id)

    for cid, text in texts.items():
        model = "judge" if cid == "judge" else "claude-latest"
        online = claude.messages.create(**params(text, model=model))
        result = lines[cid]
        assert result.type == "succeeded", cid
        assert result.message.content == online.content
        assert result.message.model == online.model
        assert result.message.usage.input_tokens == online.usage.input_tokens
        assert result.message.usage.output_tokens == online.usage.output_tokens
    answers = {cid: r.message.content[0].text for cid, r in lines.items()}
    assert answers["q0"] in ("Refunds within 30 days.", "Drifted.")
    assert {"Drifted.", "I don't know."} <= set(answers.values())  # drift applies to batches
    assert json.loads(answers["judge"])["accuracy"] < 1

    stats = server.stats()
    assert stats["requests"] == 7  # only the online calls above
    assert stats["batches"]["created"] == {"anthropic": 2, "openai": 0}
    assert stats["batches"]["requests"] == 7
    assert stats["batches"]["by_model"] == {"claude-latest": 6, "judge": 1}
    assert stats["batches"]["by_resolved_model"] == {"claude-sonnet-4-6": 6, "judge": 1}
    assert stats["batches"]["results_downloads"] == 2


def test_anthropic_partial_failures_are_errored_lines_with_real_error_bodies(
    server: LocalProviderServer, claude: anthropic.Anthropic
) -> None:
    batch = claude.messages.batches.create(
        requests=[
            {"custom_id": "ok", "params": params("refund please")},
            {"custom_id": "batch-rule", "params": params("flaky batch")},
            {"custom_id": "online-rule", "params": params("flaky online")},
            {"custom_id": "both-rule", "params": params("flaky anywhere")},
            {"custom_id": "unknown", "params": params("hi", model="claude-nope")},
            {"custom_id": "retired", "params": params("hi", model="gpt-old")},
            {"custom_id": "no-max", "params": {"model": "claude-sonnet-4-6", "messages": []}},  # type: ignore[typeddict-item]
        ]
    )
    claude.messages.batches.retrieve(batch.id)
    lines = results(claude, batch.id)
    assert lines["ok"].type == "succeeded"
    assert lines["online-rule"].type == "succeeded"  # an online rule stays online

    def error(cid: str) -> tuple[str, str]:
        result = lines[cid]
        assert result.type == "errored"
        assert result.error.type == "error"
        return result.error.error.type, result.error.error.message

    assert error("batch-rule")[0] == "api_error"
    assert error("both-rule")[0] == "rate_limit_error"
    assert error("unknown") == ("not_found_error", "model: claude-nope")
    assert error("retired")[0] == "not_found_error"
    assert error("no-max") == ("invalid_request_error", "max_tokens: Field required")
    counts = claude.messages.batches.retrieve(batch.id).request_counts
    assert (counts.succeeded, counts.errored) == (2, 5)

    # the batch rule does not fire online, the "both" rule does
    assert claude.messages.create(**params("flaky batch")).content[0].type == "text"
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(**params("flaky anywhere"))
    with pytest.raises(anthropic.InternalServerError):
        claude.messages.create(**params("flaky online"))


def test_anthropic_batch_ends_on_the_configured_poll(
    make_server: ServerFactory, roots: tuple[anthropic.Anthropic, openai.OpenAI]
) -> None:
    server = make_server({**SCENARIO, "batches": {"polls": 3}})
    claude = roots[0].with_options(base_url=server.url)
    batch = claude_batch(claude, {"a": "refund", "b": "hello"})
    statuses = [claude.messages.batches.retrieve(batch.id).processing_status for _ in range(4)]
    assert statuses == ["in_progress", "in_progress", "ended", "ended"]
    assert server.stats()["batches"]["retrievals"] == 4
    assert [b.retrievals for b in server.batches()] == [4]


def test_held_batches_end_only_when_released(
    server: LocalProviderServer, claude: anthropic.Anthropic
) -> None:
    server.hold_batches()
    batch = claude_batch(claude, {"a": "refund", "b": "hello"})
    for _ in range(5):
        assert claude.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    assert server.stats()["batches"]["held"] is True
    assert server.stats()["batches"]["in_progress"] == 1
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        list(claude.messages.batches.results(batch.id))
    (info,) = server.batches()
    assert (info.id, info.provider, info.status) == (batch.id, "anthropic", "in_progress")
    assert info.custom_ids == ("a", "b")
    assert dict(info.outcomes) == {}

    server.release_batches()
    assert server.stats()["batches"]["in_progress"] == 0
    assert server.batches()[0].status == "ended"
    assert claude.messages.batches.retrieve(batch.id).request_counts.succeeded == 2
    # new batches end on their polls again
    second = claude_batch(claude, {"c": "x"})
    assert claude.messages.batches.retrieve(second.id).processing_status == "ended"


def test_anthropic_expiry_keeps_what_was_done(
    server: LocalProviderServer, claude: anthropic.Anthropic
) -> None:
    server.hold_batches()
    batch = claude_batch(claude, {"a": "refund", "b": "flaky batch", "c": "three", "d": "four"})
    server.process_batches(2)
    assert claude.messages.batches.retrieve(batch.id).request_counts.processing == 4
    server.expire_batches()
    counts = claude.messages.batches.retrieve(batch.id).request_counts
    assert (counts.succeeded, counts.errored, counts.expired, counts.processing) == (1, 1, 2, 0)
    lines = results(claude, batch.id)
    assert [lines[c].type for c in "abcd"] == ["succeeded", "errored", "expired", "expired"]
    assert server.batches()[0].outcomes == {
        "a": "succeeded",
        "b": "errored",
        "c": "expired",
        "d": "expired",
    }
    assert server.stats()["batches"]["requests"] == 2


def test_expire_after_setting_expires_the_rest(
    make_server: ServerFactory, roots: tuple[anthropic.Anthropic, openai.OpenAI]
) -> None:
    server = make_server({**SCENARIO, "batches": {"expire_after": 1}})
    claude = roots[0].with_options(base_url=server.url)
    batch = claude_batch(claude, {"a": "refund", "b": "two", "c": "three"})
    assert claude.messages.batches.retrieve(batch.id).processing_status == "ended"
    assert [r.type for r in results(claude, batch.id).values()] == [
        "succeeded",
        "expired",
        "expired",
    ]


def test_anthropic_cancel(server: LocalProviderServer, claude: anthropic.Anthropic) -> None:
    server.hold_batches()
    batch = claude_batch(claude, {"a": "refund", "b": "two", "c": "three"})
    server.process_batches(1)
    canceling = claude.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    assert claude.messages.batches.retrieve(batch.id).processing_status == "canceling"  # held
    server.release_batches()
    ended = claude.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (1, 2)
    assert [r.type for r in results(claude, batch.id).values()] == [
        "succeeded",
        "canceled",
        "canceled",
    ]
    with pytest.raises(anthropic.ConflictError):
        claude.messages.batches.cancel(batch.id)
    assert server.stats()["batches"]["cancels"] == 1

    # without holding, a canceled batch ends at its next retrieval
    server_batch = claude_batch(claude, {"x": "y"})
    assert claude.messages.batches.cancel(server_batch.id).processing_status == "canceling"
    again = claude.messages.batches.retrieve(server_batch.id)
    assert (again.processing_status, again.request_counts.canceled) == ("ended", 1)


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "requests: List should have at least 1 item"),
        (
            [{"custom_id": "a b", "params": params("x")}],
            "requests.0.custom_id: String should match",
        ),
        ([{"custom_id": "x" * 65, "params": params("x")}], "requests.0.custom_id: String should"),
        (
            [{"custom_id": "a", "params": params("x")}, {"custom_id": "a", "params": params("y")}],
            "requests.1.custom_id: Duplicate custom_id 'a'",
        ),
        ([{"custom_id": "a"}], "requests.0.params: Field required"),
        ([{"custom_id": "a", "params": "x"}], "requests.0.params: Input should be a valid dict"),
    ],
)
def test_anthropic_malformed_batch_is_a_400(
    server: LocalProviderServer,
    claude: anthropic.Anthropic,
    requests: list[Any],
    message: str,
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.batches.create(requests=requests)
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(message)
    assert server.stats()["batches"]["created"]["anthropic"] == 0


def test_anthropic_unknown_batches_and_delete(
    server: LocalProviderServer, claude: anthropic.Anthropic
) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.batches.retrieve("msgbatch_nope")
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.cancel("msgbatch_nope")
    server.hold_batches()
    batch = claude_batch(claude, {"a": "refund"})
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.batches.delete(batch.id)  # still in progress
    server.release_batches()
    results_url = claude.messages.batches.retrieve(batch.id).results_url
    assert claude.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve(batch.id)
    assert results_url is not None
    with pytest.raises(anthropic.NotFoundError):
        claude.get(results_url, cast_to=object)
    assert server.batches() == []


def test_anthropic_list_pages_newest_first(
    server: LocalProviderServer, claude: anthropic.Anthropic
) -> None:
    ids = [claude_batch(claude, {"a": f"q{i}"}).id for i in range(5)]
    page = claude.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == [ids[4], ids[3]]
    assert page.has_more
    assert page.first_id == ids[4]
    assert page.last_id == ids[3]
    assert [b.id for b in claude.messages.batches.list(limit=2)] == ids[::-1]  # auto-paging
    before = claude.messages.batches.list(limit=2, before_id=ids[2])
    assert [b.id for b in before.data] == [ids[4], ids[3]]
    assert not before.has_more
    after = claude.messages.batches.list(limit=10, after_id=ids[1])
    assert [b.id for b in after.data] == [ids[0]]
    assert not after.has_more


def test_batch_routes_need_the_key(
    make_server: ServerFactory, roots: tuple[anthropic.Anthropic, openai.OpenAI]
) -> None:
    server = make_server({**SCENARIO, "api_key": "secret"})
    claude = roots[0].with_options(base_url=server.url, api_key="wrong")
    gpt = roots[1].with_options(base_url=server.openai_base_url, api_key="wrong")
    with pytest.raises(anthropic.AuthenticationError):
        claude.messages.batches.list()
    with pytest.raises(openai.AuthenticationError):
        gpt.batches.list()
    with pytest.raises(openai.AuthenticationError):
        upload(gpt, [chat_line("a", "x")])
    assert server.stats()["batches"]["files_uploaded"] == 0


# -- OpenAI Batch + Files ------------------------------------------------------------------------


def test_openai_batch_answers_as_the_online_requests_do(
    server: LocalProviderServer, gpt: openai.OpenAI
) -> None:
    lines = [chat_line(f"r{i}", f"question {i}", temperature=0.2) for i in range(3)]
    file = upload(gpt, lines)
    assert (file.object, file.purpose, file.filename) == ("file", "batch", "in.jsonl")
    assert file.bytes == len("\n".join(json.dumps(line) for line in lines))
    assert gpt.files.retrieve(file.id).id == file.id
    batch = gpt.batches.create(
        input_file_id=file.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"run": "r1"},
    )
    assert batch.status == "validating"
    assert batch.object == "batch"
    assert batch.metadata == {"run": "r1"}
    assert batch.input_file_id == file.id
    assert batch.output_file_id is None

    done = gpt.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.completed_at is not None
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (3, 3)
    assert done.error_file_id is None
    assert done.model == "gpt-5-2026"
    output = file_lines(gpt, done.output_file_id)
    assert gpt.files.retrieve(done.output_file_id or "").purpose == "batch_output"
    online = gpt.chat.completions.create(
        model="gpt-5-2026", messages=[{"role": "user", "content": "question 0"}]
    )
    line = output["r0"]
    assert line["id"].startswith("batch_req_")
    assert line["error"] is None
    assert line["response"]["status_code"] == 200
    assert line["response"]["request_id"].startswith("req_")
    body = line["response"]["body"]
    assert body["choices"][0]["message"] == online.choices[0].message.model_dump(
        exclude_none=False, include={"role", "content", "refusal"}
    )
    assert body["usage"] == online.usage.model_dump(exclude_none=True)  # type: ignore[union-attr]
    assert body["system_fingerprint"] == "fp_1"
    assert body["model"] == "gpt-5-2026"
    assert done.usage is not None
    assert done.usage.input_tokens == 3 * body["usage"]["prompt_tokens"]

    stats = server.stats()
    assert stats["requests"] == 1
    assert stats["batches"]["created"] == {"anthropic": 0, "openai": 1}
    assert stats["batches"]["files_uploaded"] == 1
    assert stats["batches"]["results_downloads"] == 1
    assert stats["batches"]["by_model"] == {"gpt-5-2026": 3}


def test_openai_failed_requests_go_to_the_error_file(
    server: LocalProviderServer, gpt: openai.OpenAI
) -> None:
    lines = [
        chat_line("ok", "refund", model="claude-sonnet-4-6"),
        chat_line("rule", "flaky batch", model="claude-sonnet-4-6"),
        chat_line("unknown-field", "x", model="claude-sonnet-4-6", foo=1),
    ]
    batch = gpt.batches.retrieve(gpt_batch(gpt, lines).id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 2)
    assert set(file_lines(gpt, batch.output_file_id)) == {"ok"}
    errors = file_lines(gpt, batch.error_file_id)
    assert errors["rule"]["response"]["status_code"] == 500
    assert errors["rule"]["response"]["body"]["error"]["type"] == "server_error"
    assert errors["rule"]["error"] is None
    assert errors["unknown-field"]["response"]["body"]["error"] == {
        "message": "Unrecognized request argument supplied: foo",
        "type": "invalid_request_error",
        "param": "foo",
        "code": None,
    }

    all_failed = gpt.batches.retrieve(gpt_batch(gpt, [chat_line("x", "y", foo=1)]).id)
    assert all_failed.output_file_id is None
    assert all_failed.error_file_id is not None


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            [chat_line("a", "x"), chat_line("a", "y")],
            [{"code": "duplicate_custom_id", "line": 2, "param": "custom_id"}],
        ),
        (
            [chat_line("a", "x"), chat_line("b", "y", model="claude-sonnet-4-6")],
            [{"code": "model_mismatch", "line": 2, "param": "body.model"}],
        ),
        (
            [chat_line("a", "x"), "{not json", {**chat_line("c", "z"), "url": "/v1/embeddings"}],
            [
                {"code": "invalid_json_line", "line": 2, "param": None},
                {"code": "url_mismatch", "line": 3, "param": "url"},
            ],
        ),
        (
            [{"custom_id": "a", "method": "POST"}],
            [{"code": "missing_required_parameter", "line": 1}],
        ),
        (
            [{**chat_line("a", "x"), "method": "GET"}],
            [{"code": "invalid_value", "param": "method"}],
        ),
        ([""], [{"code": "empty_file", "line": 1}]),
        ([chat_line("a", "x", model="gpt-nope")], [{"code": "model_not_found", "line": 1}]),
    ],
)
def test_openai_invalid_input_file_fails_the_batch(
    server: LocalProviderServer,
    gpt: openai.OpenAI,
    lines: list[Any],
    expected: list[dict[str, Any]],
) -> None:
    batch = gpt_batch(gpt, lines)
    assert batch.status == "validating"
    failed = gpt.batches.retrieve(batch.id)
    assert failed.status == "failed"
    assert failed.failed_at is not None
    assert failed.errors is not None
    assert failed.errors.object == "list"
    assert failed.errors.data is not None
    got = [error.model_dump() for error in failed.errors.data]
    assert [{k: g[k] for k in want} for g, want in zip(got, expected, strict=True)] == expected
    assert all(g["message"] for g in got)
    assert failed.output_file_id is None
    assert failed.error_file_id is None
    assert server.stats()["batches"]["requests"] == 0


def test_openai_create_errors(server: LocalProviderServer, gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        gpt.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert caught.value.body["message"] == "No such File object: file-nope"  # type: ignore[index]
    wrong_purpose = upload(gpt, [chat_line("a", "x")], purpose="user_data")
    with pytest.raises(openai.BadRequestError) as bad:
        gpt.batches.create(
            input_file_id=wrong_purpose.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
    assert bad.value.body["param"] == "input_file_id"  # type: ignore[index]
    file = upload(gpt, [chat_line("a", "x")])
    with pytest.raises(openai.BadRequestError) as window:
        gpt.batches.create(
            input_file_id=file.id,
            endpoint="/v1/chat/completions",
            completion_window="48h",  # type: ignore[arg-type]
        )
    assert window.value.body["param"] == "completion_window"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as purpose:
        upload(gpt, [chat_line("a", "x")], purpose="nonsense")
    assert purpose.value.body["code"] == "invalid_value"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        gpt.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        gpt.batches.cancel("batch_nope")
    with pytest.raises(openai.NotFoundError):
        gpt.files.content("file-nope")
    assert server.stats()["batches"]["created"]["openai"] == 0


def test_openai_expiry_delivers_what_completed(
    server: LocalProviderServer, gpt: openai.OpenAI
) -> None:
    server.hold_batches()
    batch = gpt_batch(gpt, [chat_line(f"r{i}", f"q{i}") for i in range(4)])
    assert gpt.batches.retrieve(batch.id).status == "in_progress"
    server.process_batches(1)
    progress = gpt.batches.retrieve(batch.id)
    assert progress.status == "in_progress"
    assert progress.request_counts is not None
    assert (progress.request_counts.total, progress.request_counts.completed) == (4, 1)
    server.expire_batches()
    expired = gpt.batches.retrieve(batch.id)
    assert expired.status == "expired"
    assert expired.expired_at is not None
    assert set(file_lines(gpt, expired.output_file_id)) == {"r0"}
    errors = file_lines(gpt, expired.error_file_id)
    assert set(errors) == {"r1", "r2", "r3"}
    assert errors["r1"]["response"] is None
    assert errors["r1"]["error"]["code"] == "batch_expired"
    assert expired.request_counts is not None
    assert (expired.request_counts.completed, expired.request_counts.failed) == (1, 3)


def test_openai_cancel(server: LocalProviderServer, gpt: openai.OpenAI) -> None:
    server.hold_batches()
    batch = gpt_batch(gpt, [chat_line(f"r{i}", f"q{i}") for i in range(3)])
    server.process_batches(2)
    cancelling = gpt.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    server.release_batches()
    cancelled = gpt.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_at is not None
    assert set(file_lines(gpt, cancelled.output_file_id)) == {"r0", "r1"}
    assert file_lines(gpt, cancelled.error_file_id)["r2"]["error"]["code"] == "batch_cancelled"
    with pytest.raises(openai.ConflictError):
        gpt.batches.cancel(batch.id)
    assert server.stats()["batches"]["cancels"] == 1
    assert server.batches()[0].status == "cancelled"


def test_openai_lists_and_files(server: LocalProviderServer, gpt: openai.OpenAI) -> None:
    ids = [gpt_batch(gpt, [chat_line("a", f"q{i}")]).id for i in range(3)]
    page = gpt.batches.list(limit=2)
    assert [b.id for b in page.data] == [ids[2], ids[1]]
    assert page.has_more
    assert [b.id for b in gpt.batches.list(limit=2)] == ids[::-1]  # auto-paging
    uploads = [f.id for f in gpt.files.list(purpose="batch")]
    assert len(uploads) == 3
    deleted = gpt.files.delete(uploads[0])
    assert deleted.deleted
    assert deleted.id == uploads[0]
    with pytest.raises(openai.NotFoundError):
        gpt.files.retrieve(uploads[0])


def test_polling_until_ended_with_the_sdks(
    make_server: ServerFactory, roots: tuple[anthropic.Anthropic, openai.OpenAI]
) -> None:
    server = make_server({**SCENARIO, "batches": {"polls": 4}})
    claude = roots[0].with_options(base_url=server.url)
    gpt = roots[1].with_options(base_url=server.openai_base_url)
    anthropic_batch = claude_batch(claude, {"a": "refund"})
    polls = 0
    while claude.messages.batches.retrieve(anthropic_batch.id).processing_status != "ended":
        polls += 1
    assert polls == 3
    openai_batch = gpt_batch(gpt, [chat_line("a", "x")])
    seen = []
    while (status := gpt.batches.retrieve(openai_batch.id).status) != "completed":
        seen.append(status)
    assert seen == ["in_progress"] * 3
    assert server.wait_until(lambda s: s["batches"]["retrievals"] == 8, timeout=1)


def test_admin_routes_for_batches(server: LocalProviderServer, claude: anthropic.Anthropic) -> None:
    admin(server, "POST", "/_admin/batches/hold")
    batch = claude_batch(claude, {"a": "refund", "b": "two"})
    admin(server, "POST", "/_admin/batches/process", {"count": 1})
    listed = admin(server, "GET", "/_admin/batches")["data"]
    assert listed[0]["id"] == batch.id
    assert listed[0]["outcomes"] == {"a": "succeeded"}
    admin(server, "POST", "/_admin/batches/expire")
    assert claude.messages.batches.retrieve(batch.id).request_counts.expired == 1
    assert admin(server, "GET", "/_admin/stats")["batches"]["created"]["anthropic"] == 1
    admin(server, "POST", "/_admin/batches/release")
    assert server.stats()["batches"]["held"] is False
    admin(server, "POST", "/_admin/reset")
    assert server.stats()["batches"]["created"]["anthropic"] == 0
    assert [b.id for b in server.batches()] == [batch.id]  # batches outlive a reset


def test_a_restarted_server_forgets_its_batches(
    server: LocalProviderServer, claude: anthropic.Anthropic
) -> None:
    batch = claude_batch(claude, {"a": "refund"})
    fresh = LocalProviderServer(SCENARIO).start()
    try:
        with pytest.raises(anthropic.NotFoundError):
            claude.with_options(base_url=fresh.url).messages.batches.retrieve(batch.id)
    finally:
        fresh.stop()


@pytest.mark.parametrize(
    ("batches", "path", "problem"),
    [
        ({"polls": 0}, "batches.polls", "must be >= 1"),
        ({"polls": "2"}, "batches.polls", "expected an integer"),
        ({"delay_s": -1}, "batches.delay_s", "finite number >= 0"),
        ({"expire_after": -1}, "batches.expire_after", "must be >= 0"),
        ({"pols": 1}, "batches.pols", "unknown key 'pols'"),
        ([], "batches", "expected a mapping"),
    ],
)
def test_batch_settings_are_validated(batches: Any, path: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario({"models": {}, "batches": batches})
    assert caught.value.path == path
    assert problem in caught.value.problem


def test_applies_to_is_validated() -> None:
    bad = {"models": {"m": {"errors": [{"status": 500, "applies_to": "batches"}]}}}
    with pytest.raises(ScenarioError) as caught:
        load_scenario(bad)
    assert caught.value.path == "models.m.errors[0].applies_to"
    assert "expected one of online, batch, both" in caught.value.problem
    scenario = load_scenario({"batches": {"polls": 2, "delay_s": 0.5}})
    assert (scenario.batches.polls, scenario.batches.delay_s) == (2, 0.5)


def test_delay_keeps_a_batch_in_progress_past_its_polls(
    make_server: ServerFactory, roots: tuple[anthropic.Anthropic, openai.OpenAI]
) -> None:
    server = make_server({**SCENARIO, "batches": {"polls": 1, "delay_s": 3600}})
    claude = roots[0].with_options(base_url=server.url)
    batch = claude_batch(claude, {"a": "refund"})
    for _ in range(3):
        assert claude.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    server.release_batches()
    assert claude.messages.batches.retrieve(batch.id).processing_status == "ended"


def test_the_async_clients_drive_both_batch_apis(server: LocalProviderServer) -> None:
    asyncio.run(drive_async(server))


async def drive_async(server: LocalProviderServer) -> None:
    claude = anthropic.AsyncAnthropic(base_url=server.url, api_key="x", max_retries=0)
    gpt = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="x", max_retries=0)
    try:
        batch = await claude.messages.batches.create(
            requests=[{"custom_id": "a", "params": params("refund")}]
        )
        assert (await claude.messages.batches.retrieve(batch.id)).processing_status == "ended"
        lines = [line async for line in await claude.messages.batches.results(batch.id)]
        assert [line.result.type for line in lines] == ["succeeded"]

        data = json.dumps(chat_line("a", "hello")).encode()
        file = await gpt.files.create(file=("in.jsonl", data), purpose="batch")
        created = await gpt.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = await gpt.batches.retrieve(created.id)
        assert done.status == "completed"
        assert done.output_file_id is not None
        content = await gpt.files.content(done.output_file_id)
        line = json.loads(content.text)
        assert line["response"]["body"]["choices"][0]["message"]["content"] == "gpt says hi"
    finally:
        await claude.close()
        await gpt.close()


def test_results_are_served_as_the_api_serves_them(
    server: LocalProviderServer, claude: anthropic.Anthropic
) -> None:
    batch = claude_batch(claude, {"a": "refund", "b": "two"})
    url = claude.messages.batches.retrieve(batch.id).results_url
    assert url is not None
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", url, headers={"x-api-key": "x"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200
    assert response.getheader("content-type") == "application/x-jsonl"
    assert response.getheader("content-disposition") == (
        f"attachment; filename*=utf-8''{batch.id}_results.jsonl"
    )
    assert response.getheader("request-id", "").startswith("req_")
    assert [json.loads(line)["custom_id"] for line in body.splitlines()] == ["a", "b"]
