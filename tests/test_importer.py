"""``llmregress import``: production logs to golden cases.

Readers for every log shape, malformed lines, duplicates, stratified sampling, redaction and
its false positives, stable ids, the written file, warnings and exit statuses.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shlex
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress import __version__, cli
from pytest_llmregress.authoring.importer import (
    ImportOptions,
    LogRecord,
    RecordError,
    allocate,
    case_id,
    dedupe,
    detect_format,
    import_logs,
    length_band,
    luhn_ok,
    parse_record,
    redact,
    stratified_sample,
    stratum_of,
)
from pytest_llmregress.cases.golden import GoldenCase, load_cases, parse_jsonl
from pytest_llmregress.cli.import_logs import main

DATA = Path(__file__).parent / "data" / "import"
RESPONSES = DATA.parent / "import_responses.jsonl"
LITELLM = DATA.parent / "import_litellm.jsonl"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

Capture = pytest.CaptureFixture[str]


def write_log(path: Path, records: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plain(user: str, output: str = "ok", **extra: Any) -> dict[str, Any]:
    return {"input": user, "output": output, **extra}


def run(capsys: Capture, *args: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def case_lines(path: Path) -> list[dict[str, Any]]:
    """The cases of a written golden file, checked to be standard JSON Lines on the way.

    Every line must be one JSON object for ``json.loads`` and one case for the project's own
    loader (alone and as a file): no comment, header or blank lines.
    """
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = text.removesuffix("\n").split("\n")
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(obj, dict) for obj in objects)
    for number, line in enumerate(lines, start=1):
        (alone,) = parse_jsonl(line, f"{path}:{number}")
        assert alone.id == objects[number - 1]["id"]
    assert [case.id for case in load_cases(path)] == [obj["id"] for obj in objects]
    return objects


def by_user(cases: list[GoldenCase]) -> dict[str, GoldenCase]:
    return {case.user: case for case in cases}


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def test_openai_logs(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "support.jsonl"
    status, stdout, _ = run(capsys, DATA / "openai.jsonl", "-o", out)
    assert status == 0
    assert "read 3 records from 1 file" in stdout
    cases = by_user(load_cases(out))
    assert len(cases) == 3

    boots = cases["How long do I have to return boots?"]
    assert boots.system == "You are a support agent for Borealis Outdoor."
    assert [m.role for m in boots.messages] == ["user"]
    assert boots.reference == "You can return unworn boots within 30 days of delivery."
    assert boots.metadata["source"] == f"{DATA / 'openai.jsonl'}:1"
    assert boots.metadata["model"] == "gpt-4o-2024-08-06"  # the response's model wins
    assert boots.metadata["endpoint"] == "/support"
    assert boots.metadata["timestamp"] == "2026-03-02T10:15:00Z"
    assert "user_id" not in boots.metadata
    assert boots.threshold == 0.85  # defaults apply
    assert [s.name for s in boots.scorers] == ["judge"]

    # developer role and content parts; multi-turn ends with the user; truncated answer.
    refund = cases["Yes. Can I still get a refund?"]
    assert refund.system == "Answer in one sentence."
    assert [(m.role, m.content) for m in refund.messages] == [
        ("user", "I lost my receipt."),
        ("assistant", "I can help. Do you have the order email?"),
        ("user", "Yes. Can I still get a refund?"),
    ]
    assert refund.metadata["truncated"] is True
    assert refund.metadata["ticket"] == "T-77"  # the log's metadata object is merged
    assert "user" not in refund.metadata

    # Flat fine-tuning style: the last assistant message is the reference.
    parcel = cases["My parcel never arrived."]
    assert parcel.system == "Classify the ticket as billing, shipping or other."
    assert parcel.reference == "shipping"
    assert "model" not in parcel.metadata


def test_anthropic_logs(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "claude.jsonl"
    status, _, _ = run(capsys, DATA / "anthropic.jsonl", "-o", out, "--format", "anthropic")
    assert status == 0
    cases = by_user(load_cases(out))
    sql = cases["How many orders are paid?"]
    assert sql.system == "You write PostgreSQL. Output SQL only."
    assert sql.reference == "SELECT COUNT(*) FROM orders WHERE status = 'paid';"
    assert sql.metadata["model"] == "claude-sonnet-4-5-20250929"
    assert sql.metadata["tag"] == "sql"

    summary = cases["Engineering managers."]
    assert summary.system == "Summarize in one sentence."  # system as text blocks
    assert [m.content for m in summary.messages] == [
        "The checkout service was down for 47 minutes on 14 November.",
        "Which audience?",  # thinking blocks are not part of the conversation
        "Engineering managers.",
    ]
    # Text blocks of the answer are joined; thinking is dropped.
    assert summary.reference == "Checkout was down for 47 minutes on 14 November."


def test_plain_logs(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "qa.jsonl"
    status, _, err = run(capsys, DATA / "plain.jsonl", "-o", out, "--format", "plain")
    assert status == 0
    assert "skipped" not in err  # the blank line is not malformed
    cases = by_user(load_cases(out))
    france = cases["What is the capital of France? One word."]
    assert france.system == "Answer tersely."
    assert france.reference == "Paris"
    assert dict(france.metadata) == {
        "source": f"{DATA / 'plain.jsonl'}:1",
        "model": "my-finetune-v3",
        "endpoint": "/qa",
        "locale": "en-GB",
    }
    peru = cases["What is the capital of Peru? One word."]
    assert peru.system is None
    assert peru.metadata["source"].endswith("plain.jsonl:3")
    assert peru.metadata["timestamp"] == 1767225600


def test_auto_detects_each_line(tmp_path: Path, capsys: Capture) -> None:
    lines = []
    for path in (DATA / "openai.jsonl", DATA / "anthropic.jsonl", DATA / "plain.jsonl"):
        lines += [line for line in path.read_text().splitlines() if line.strip()]
    for path in (RESPONSES, LITELLM):
        lines += path.read_text().splitlines()
    log = write_log(tmp_path / "mixed.jsonl", lines)
    out = tmp_path / "mixed-out.jsonl"
    status, stdout, err = run(capsys, log, "-o", out)
    assert status == 0, err
    assert "read 13 records from 1 file" in stdout
    # The LiteLLM spend-log row holds the conversation of anthropic.jsonl's first line.
    assert "removed 1 duplicate" in stdout
    assert len(case_lines(out)) == 12
    (sql,) = [case for case in load_cases(out) if case.user == "How many orders are paid?"]
    assert sql.metadata["source"] == f"{log}:4"  # the first one read is kept


def test_forced_format_rejects_other_shapes(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "out.jsonl"
    status, _, err = run(capsys, DATA / "openai.jsonl", "-o", out, "--format", "plain")
    assert status == 1
    assert "openai.jsonl:1: skipped: not a plain {input, output} record" in err
    assert "looks like an OpenAI chat record" in err
    assert "no cases to write" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"request": {"messages": [{"role": "user", "content": "hi"}]}}, "no response"),
        (
            {
                "request": {"messages": [{"role": "tool", "content": "42"}]},
                "response": {"choices": [{"message": {"content": "x"}}]},
            },
            "tool messages are not supported",
        ),
        (
            {
                "request": {"messages": [{"role": "user", "content": "hi"}]},
                "response": {"content": [{"type": "tool_use", "id": "t", "name": "f"}]},
            },
            "non-text content ('tool_use')",
        ),
        (
            {
                "request": {"messages": [{"role": "user", "content": [{"type": "image"}]}]},
                "response": {"content": [{"type": "text", "text": "x"}]},
            },
            "request.messages[0].content[0]: non-text content ('image')",
        ),
        (
            {
                "request": {"messages": [{"role": "user", "content": "hi"}]},
                "response": {"content": [{"type": "text", "text": "  "}]},
            },
            "response.content: empty text",
        ),
        (
            {
                "request": {"messages": [{"role": "assistant", "content": "hello"}]},
                "response": {"choices": [{"message": {"content": "x"}}]},
            },
            "ends with an assistant message",
        ),
        ({"request": "text", "response": {}}, "request: expected an object, got a string"),
        ({"messages": []}, "expected a non-empty list of messages"),
        ({"input": "", "output": "x"}, "input: expected a non-empty string"),
        ({"input": "x", "output": 3}, "output: expected a string, got a number"),
        ({"prompt": "x", "completion": "y"}, "unknown record shape"),
    ],
)
def test_parse_record_errors(record: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=re.escape(message)):
        parse_record(record)


def test_system_messages_in_the_list_are_joined() -> None:
    record = parse_record(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "system", "content": "Use British English."},
                {"role": "user", "content": "Colour?"},
                {"role": "assistant", "content": "Colour."},
            ]
        }
    )
    assert record.system == "Be brief.\n\nUse British English."
    assert record.messages == (("user", "Hi"), ("user", "Colour?"))
    assert record.reference == "Colour."


# --------------------------------------------------------------------------------------------
# OpenAI Responses API and LiteLLM gateway logs
# --------------------------------------------------------------------------------------------


def test_responses_api_logs(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "support.jsonl"
    status, stdout, err = run(capsys, RESPONSES, "-o", out)
    assert status == 0, err
    assert "skipped" not in err
    assert "read 3 records from 1 file" in stdout
    lines = {line["metadata"]["source"]: line for line in case_lines(out)}
    cases = by_user(load_cases(out))
    assert len(cases) == 3

    # The request and the response: string input, instructions, a reasoning item dropped.
    boots = cases["Can I return boots I wore once on a hike?"]
    assert boots.system == "You are a support agent for Borealis Outdoor. Answer in one sentence."
    assert [m.role for m in boots.messages] == ["user"]
    assert "user" in lines[f"{RESPONSES}:1"]  # one turn is written as `user`
    assert boots.reference == "No: only unworn boots can be returned, within 30 days of delivery."
    assert dict(boots.metadata) == {
        "source": f"{RESPONSES}:1",
        "model": "gpt-5-2025-08-07",  # the response's model wins
        "endpoint": "/support",
        "timestamp": "2026-03-02T10:15:00Z",
    }  # user_id dropped; nothing of the request or response object is copied

    # Input items: a developer message, input_text parts, an earlier assistant output item;
    # an incomplete response is a truncated answer.
    refund = cases["Yes. Can I still get a refund?"]
    assert refund.system == "Reply in British English."
    assert [(m.role, m.content) for m in refund.messages] == [
        ("user", "I lost my receipt."),
        ("assistant", "I can help. Do you have the order email?"),
        ("user", "Yes. Can I still get a refund?"),
    ]
    assert refund.reference == "Yes: the order email works as proof of purchase, so"
    assert dict(refund.metadata) == {
        "source": f"{RESPONSES}:2",
        "model": "gpt-4.1-2025-04-14",
        "truncated": True,
        "endpoint": "/support",
        "ticket": "T-77",
    }

    # Flat: the response object with its input; the response's own fields are not metadata.
    parcel = cases["My parcel never arrived."]
    assert parcel.system == (
        "Classify the ticket as billing, shipping or other. Answer with the label only."
    )
    assert parcel.reference == "shipping"
    assert dict(parcel.metadata) == {
        "source": f"{RESPONSES}:3",
        "model": "gpt-4.1-mini-2025-04-14",
        "endpoint": "/classify",
    }
    assert parcel.threshold == 0.85
    assert [s.name for s in parcel.scorers] == ["judge"]


def test_litellm_logs(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "gateway.jsonl"
    status, stdout, err = run(capsys, LITELLM, "-o", out)
    assert status == 0, err
    assert "skipped" not in err
    assert "read 3 records from 1 file" in stdout
    assert "dropped 1 user-id field (end_user); --keep-user-ids keeps them" in stdout
    assert "redacted: nothing found" in stdout
    case_lines(out)
    cases = by_user(load_cases(out))
    assert len(cases) == 3

    # A StandardLoggingPayload of a chat completion.
    norway = cases["Do you ship to Norway?"]
    assert norway.system == "You are a support agent for Borealis Outdoor."
    assert norway.reference == "Yes, we ship to Norway; delivery takes 3 to 5 working days."
    assert dict(norway.metadata) == {
        "source": f"{LITELLM}:1",
        "model": "gpt-4o-mini-2024-07-18",  # the response's, not the requested alias
        "call_id": "9f1c2a7e-4b7d-4c1e-9d3f-0a2b3c4d5e6f",
        "call_type": "acompletion",
        "custom_llm_provider": "openai",
        "endTime": 1772446501.456,
        "endpoint": "/support",  # metadata.spend_logs_metadata
        "id": "chatcmpl-9f1c2a7e-4b7d-4c1e-9d3f-0a2b3c4d5e6f",
        "model_group": "support-model",
        "request_tags": ["support", "prod"],
        "startTime": 1772446500.123,
        "ticket": "T-1001",  # metadata.requester_metadata
        "trace_id": "5b0c7d2e-8f41-4a36-9c8e-2d1f0e3a4b5c",
        "user_api_key_team_alias": "support",
    }
    # Costs, tokens, deployment details, key hashes, IP addresses and the key's user are
    # not copied.
    text = out.read_text(encoding="utf-8")
    for secret in ("88dc28d0", "203.0.113", "198.51.100", "ann@example.com", "u-1842", "u-20"):
        assert secret not in text
    for name in ("response_cost", "api_base", "hidden_params", "model_map_information"):
        assert f'"{name}"' not in text

    # A Responses API call through the gateway: the response in the Responses shape, the
    # instructions in model_parameters and in the response (kept once).
    summary = cases["Summarise: the checkout service was down for 47 minutes on 14 November."]
    assert summary.system == "Summarise in one sentence for engineering managers."
    assert summary.reference == "Checkout was down for 47 minutes on 14 November."
    assert dict(summary.metadata) == {
        "source": f"{LITELLM}:2",
        "model": "gpt-4.1-2025-04-14",
        "cache_hit": False,
        "call_type": "aresponses",
        "custom_llm_provider": "openai",
        "endTime": 1772447002.25,
        "id": "resp-call-3e2d1c0b",
        "model_group": "gpt-4.1",
        "startTime": 1772447000.5,
        "trace_id": "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d",
        "user_api_key_team_alias": "ops",
    }  # null and empty fields (model_id, end_user, request_tags) are left out

    # A spend-log row: JSON text columns decoded, the request from proxy_server_request.
    sql = cases["How many orders are paid?"]
    assert sql.system == "You write PostgreSQL. Output SQL only."
    assert sql.reference == "SELECT COUNT(*) FROM orders WHERE status = 'paid';"
    assert dict(sql.metadata) == {
        "source": f"{LITELLM}:3",
        "model": "claude-sonnet-4-5-20250929",
        "truncated": True,  # finish_reason length
        "cache_hit": "False",
        "call_type": "acompletion",
        "custom_llm_provider": "anthropic",
        "endTime": "2026-03-03T08:00:02.900000Z",
        "endpoint": "/sql",
        "model_group": "sql-model",
        "request_id": "chatcmpl-7d9e8f10-2a3b-4c5d-8e9f-0a1b2c3d4e5f",
        "request_tags": ["sql"],
        "session_id": "sess-41",
        "startTime": "2026-03-03T08:00:01.250000Z",
        "team_id": "team-9a",
        "user_api_key_team_alias": "data",
    }

    status, _, _ = run(capsys, LITELLM, "-o", tmp_path / "kept.jsonl", "--keep-user-ids")
    assert status == 0
    kept = by_user(load_cases(tmp_path / "kept.jsonl"))
    assert kept["Do you ship to Norway?"].metadata["end_user"] == "cust-553"


@pytest.mark.parametrize(
    ("path", "line", "shape"),
    [
        (DATA / "openai.jsonl", 1, "openai"),
        (DATA / "openai.jsonl", 3, "openai"),
        (DATA / "anthropic.jsonl", 1, "anthropic"),
        (DATA / "plain.jsonl", 1, "plain"),
        (RESPONSES, 1, "responses"),
        (RESPONSES, 2, "responses"),
        (RESPONSES, 3, "responses"),
        (LITELLM, 1, "litellm"),
        (LITELLM, 2, "litellm"),
        (LITELLM, 3, "litellm"),
    ],
)
def test_detect_format(path: Path, line: int, shape: str) -> None:
    data = json.loads(path.read_text(encoding="utf-8").splitlines()[line - 1])
    assert detect_format(data) == shape


def test_detect_format_of_small_records() -> None:
    assert detect_format({"request": {"input": "hi"}, "response": {"id": "r"}}) == "responses"
    assert detect_format({"input": "hi", "instructions": "Be brief.", "output": "x"}) == (
        "responses"
    )
    assert detect_format({"input": [{"role": "user", "content": "hi"}]}) == "responses"
    # A gateway log without call_type: messages and response side by side.
    assert detect_format({"messages": [], "response": {}}) == "litellm"
    assert detect_format({"proxy_server_request": "{}", "response": "{}"}) == "litellm"
    assert detect_format({"call_type": "acompletion"}) == "litellm"
    assert detect_format({"prompt": "x", "completion": "y"}) is None


def test_flat_responses_record_with_text_output() -> None:
    record = parse_record({"input": "Hi", "instructions": "Be brief.", "output": "Hello."})
    assert record.format == "responses"
    assert record.system == "Be brief."
    assert record.messages == (("user", "Hi"),)
    assert record.reference == "Hello."
    assert dict(record.fields) == {}


def test_litellm_anthropic_messages_call() -> None:
    record = parse_record(
        {
            "call_type": "anthropic_messages",
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "How many orders?"}]}
            ],
            "model_parameters": {
                "system": [{"type": "text", "text": "Output SQL only."}],
                "max_tokens": 400,
            },
            "response": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [
                    {"type": "thinking", "thinking": "count rows", "signature": "s"},
                    {"type": "text", "text": "SELECT COUNT(*) FROM orders;"},
                ],
                "stop_reason": "max_tokens",
            },
            "status": "success",
        }
    )
    assert record.format == "litellm"
    assert record.system == "Output SQL only."
    assert record.messages == (("user", "How many orders?"),)
    assert record.reference == "SELECT COUNT(*) FROM orders;"
    assert record.truncated is True
    assert record.model == "claude-sonnet-4-5-20250929"
    assert dict(record.fields) == {"call_type": "anthropic_messages"}


def test_gateway_log_with_a_request_object_keeps_its_own_fields() -> None:
    record = parse_record(
        {
            "call_type": "completion",
            "startTime": "2026-03-02T10:15:00Z",
            "request": {
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "Hi"}],
                "system": "Be kind.",
            },
            "response": {"choices": [{"message": {"role": "assistant", "content": "Hello!"}}]},
            "endpoint": "/chat",
            "api_key": "hashed",
        }
    )
    assert record.format == "litellm"
    assert record.system == "Be kind."
    assert record.reference == "Hello!"
    assert record.model is None
    assert dict(record.fields) == {
        "call_type": "completion",
        "startTime": "2026-03-02T10:15:00Z",
        "endpoint": "/chat",  # not a LiteLLM field: the pipeline's own, kept
    }


_MESSAGE = {"role": "user", "content": "hi"}
_ANSWER = {
    "type": "message",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "ok"}],
}


def _responses(request: dict[str, Any], **response: Any) -> dict[str, Any]:
    body = {"object": "response", "status": "completed", "error": None, "output": [_ANSWER]}
    return {"request": request, "response": {**body, **response}}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            _responses(
                {"input": "Weather in Oslo?"},
                output=[{"type": "function_call", "call_id": "c1", "name": "f", "arguments": ""}],
            ),
            "response.output[0]: 'function_call' output (a tool call or non-text output)",
        ),
        (
            _responses(
                {"input": "hi"},
                output=[{"type": "web_search_call", "id": "ws_1", "status": "completed"}, _ANSWER],
            ),
            "response.output[0]: 'web_search_call' output",
        ),
        (
            _responses(
                {"input": "hi"},
                status="failed",
                error={"code": "server_error", "message": "boom"},
                output=[],
            ),
            "the response is an error",
        ),
        (
            _responses({"input": "hi"}, status="in_progress", output=[]),
            "response.status: 'in_progress' (no finished assistant output)",
        ),
        (
            _responses({"input": "hi"}, output=[{"type": "reasoning", "summary": []}]),
            "response.output: no message item (no assistant output)",
        ),
        (
            _responses(
                {"input": "hi"},
                output=[
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "refusal", "refusal": "I can't help with that."}],
                    }
                ],
            ),
            "response.output[0].content[0]: non-text content ('refusal')",
        ),
        (
            _responses({"input": "And in Bergen?", "previous_response_id": "resp_1"}),
            "request.previous_response_id: the conversation continues a stored response",
        ),
        (
            _responses({"input": "hi"}, previous_response_id="resp_1"),
            "response.previous_response_id: the conversation continues a stored response",
        ),
        (
            _responses({"input": "hi", "conversation": "conv_1"}),
            "request.conversation: the earlier turns are stored in an OpenAI conversation",
        ),
        (
            _responses({"prompt": {"id": "pmpt_1", "version": "2"}, "input": "hi"}),
            "request.prompt: the instructions come from a stored prompt template",
        ),
        (
            _responses(
                {
                    "input": [
                        {
                            "role": "user",
                            "content": [{"type": "input_image", "image_url": "https://x/y.png"}],
                        }
                    ]
                }
            ),
            "request.input[0].content[0]: non-text content ('input_image')",
        ),
        (
            _responses(
                {
                    "input": [
                        _MESSAGE,
                        {"type": "function_call_output", "call_id": "c1", "output": "12C"},
                    ]
                }
            ),
            "request.input[1]: 'function_call_output' items are not supported",
        ),
        (
            _responses({"input": [_MESSAGE, {"role": "assistant", "content": "hello"}]}),
            "request.input: the conversation ends with an assistant message",
        ),
        (_responses({"input": "  "}), "request.input: empty text"),
        (_responses({"input": 3}), "request.input: expected a string or a list of input items"),
        (
            _responses({"input": "hi", "instructions": [_MESSAGE]}),
            "request.instructions: expected system or developer messages, got a user message",
        ),
        ({"input": "hi", "output": []}, "output: expected a list of output items, got an empty"),
        (
            {
                "call_type": "acompletion",
                "status": "failure",
                "messages": [_MESSAGE],
                "response": {},
                "error_str": "RateLimitError",
            },
            "status 'failure': the call failed (no assistant output)",
        ),
        (
            {
                "call_type": "acompletion",
                "messages": [{"role": "user", "content": "redacted-by-litellm"}],
                "response": {
                    "choices": [
                        {"message": {"role": "assistant", "content": "redacted-by-litellm"}}
                    ]
                },
            },
            "the messages were redacted by LiteLLM (turn_off_message_logging)",
        ),
        (
            {"call_type": "acompletion", "request_id": "r1", "messages": "{}", "response": "{}"},
            "messages: not logged (no conversation); spend logs hold it only with "
            "store_prompts_in_spend_logs: true",
        ),
        (
            {"call_type": "acompletion", "messages": [_MESSAGE], "response": "{}"},
            "response: not logged (no assistant output)",
        ),
        (
            {
                "call_type": "aembedding",
                "messages": "hello",
                "response": {"object": "list", "data": [{"embedding": [0.1]}], "model": "e"},
            },
            "response of call_type 'aembedding': not a chat completion, Responses API or "
            "Anthropic messages response (keys: data, model, object)",
        ),
        (
            {
                "call_type": "acompletion",
                "messages": [_MESSAGE],
                "response": {
                    "choices": [
                        {
                            "message": {
                                "role": "assistant",
                                "content": None,
                                "tool_calls": [{"id": "c1", "type": "function"}],
                            }
                        }
                    ]
                },
            },
            "response.choices[0].message: the answer is a tool call",
        ),
        (
            {"call_type": "acompletion", "messages": [_MESSAGE], "response": ["x"]},
            "response: expected a response object, got a list",
        ),
    ],
)
def test_new_shape_errors(record: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=re.escape(message)):
        parse_record(record)


def test_new_shapes_malformed_lines_name_file_and_line(tmp_path: Path, capsys: Capture) -> None:
    good = json.loads(RESPONSES.read_text(encoding="utf-8").splitlines()[0])
    log = write_log(
        tmp_path / "mixed.jsonl",
        [
            good,
            _responses({"input": "hi"}, output=[{"type": "function_call", "name": "f"}]),
            {"call_type": "acompletion", "status": "failure", "messages": [_MESSAGE]},
            {"prompt": "x", "completion": "y"},
            {"call_type": "acompletion", "messages": "{}", "response": "{}"},
        ],
    )
    status, stdout, err = run(capsys, log, "-o", tmp_path / "out.jsonl")
    assert status == 0
    assert "read 1 record from 1 file (4 malformed lines skipped)" in stdout
    assert f"{log}:2: skipped: response.output[0]: 'function_call' output" in err
    assert f"{log}:3: skipped: status 'failure': the call failed" in err
    assert f"{log}:4: skipped: unknown record shape: expected 'request' and 'response'" in err
    assert "or a LiteLLM log with 'call_type' (keys: completion, prompt)" in err
    assert f"{log}:5: skipped: messages: not logged" in err
    assert f"{log}:1:" not in err


@pytest.mark.parametrize(
    ("log", "fmt", "message"),
    [
        (
            DATA / "openai.jsonl",
            "responses",
            "openai.jsonl:1: skipped: not an OpenAI Responses API record (it looks like an "
            "OpenAI chat record; try --format auto)",
        ),
        (
            LITELLM,
            "openai",
            "import_litellm.jsonl:1: skipped: not an OpenAI chat record (it looks like a "
            "LiteLLM gateway record; try --format auto)",
        ),
        (
            RESPONSES,
            "litellm",
            "import_responses.jsonl:3: skipped: not a LiteLLM gateway record (it looks like an "
            "OpenAI Responses API record; try --format auto)",
        ),
    ],
)
def test_forced_new_formats_reject_other_shapes(
    tmp_path: Path, capsys: Capture, log: Path, fmt: str, message: str
) -> None:
    status, _, err = run(capsys, log, "-o", tmp_path / "out.jsonl", "--format", fmt)
    assert status == 1
    assert message in err


@pytest.mark.parametrize(("log", "fmt"), [(RESPONSES, "responses"), (LITELLM, "litellm")])
def test_forced_new_formats_read_their_shape(
    tmp_path: Path, capsys: Capture, log: Path, fmt: str
) -> None:
    out = tmp_path / "out.jsonl"
    status, _, err = run(capsys, log, "-o", out, "--format", fmt)
    assert status == 0, err
    assert len(case_lines(out)) == 3


# --------------------------------------------------------------------------------------------
# Malformed lines
# --------------------------------------------------------------------------------------------


def test_malformed_lines_are_reported_with_line_numbers(tmp_path: Path, capsys: Capture) -> None:
    log = DATA / "malformed.jsonl"
    out = tmp_path / "out.jsonl"
    status, stdout, err = run(capsys, log, "-o", out)
    assert status == 0
    assert "read 2 records from 1 file (8 malformed lines skipped)" in stdout
    expected = {
        2: "invalid JSON at column",
        3: "unknown record shape",
        4: "output: missing (no assistant output)",
        5: "non-text content ('image_url')",
        6: "the answer is a tool call",
        7: "the response is an error",
        8: "expected a JSON object, got a list",
        9: "the last message must be the assistant's answer",
    }
    for line, why in expected.items():
        assert re.search(rf"{re.escape(str(log))}:{line}: skipped: .*{re.escape(why)}", err), line
    assert f"{log}:1:" not in err
    assert f"{log}:10:" not in err
    assert sorted(c.user for c in load_cases(out)) == ["Good line one", "Good line two"]


def test_undecodable_and_non_json_values_are_malformed(tmp_path: Path, capsys: Capture) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(
        b'{"input": "caf\xe9", "output": "x"}\n'
        b'{"input": "nan", "output": "x", "score": NaN}\n'
        b"\n"
        b'\xef\xbb\xbf{"input": "bom in the middle", "output": "x"}\r\n'
        b'{"input": "windows line", "output": "x"}\r\n'
    )
    status, stdout, err = run(capsys, log, "-o", tmp_path / "out.jsonl")
    assert status == 0
    assert f"{log}:1: skipped: not valid UTF-8" in err
    assert f"{log}:2: skipped: invalid JSON: NaN is not a JSON value" in err
    assert f"{log}:4: skipped: invalid JSON" in err  # a BOM is only allowed on line 1
    assert f"{log}:3:" not in err
    assert "(3 malformed lines skipped)" in stdout
    assert [c.user for c in load_cases(tmp_path / "out.jsonl")] == ["windows line"]


def test_many_malformed_lines_are_counted_past_the_shown_ones(
    tmp_path: Path, capsys: Capture
) -> None:
    log = write_log(tmp_path / "log.jsonl", ["not json"] * 60 + [json.dumps(plain("fine"))])
    status, stdout, err = run(capsys, log, "-o", tmp_path / "out.jsonl")
    assert status == 0
    assert f"{log}:50: skipped" in err
    assert f"{log}:51: skipped" not in err
    assert f"{log}: 10 more malformed lines not shown" in err
    assert "(60 malformed lines skipped)" in stdout


def test_gzip_logs_are_read(tmp_path: Path, capsys: Capture) -> None:
    log = tmp_path / "log.jsonl.gz"
    with gzip.open(log, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(plain("zipped")) + "\n")
    status, _, _ = run(capsys, log, "-o", tmp_path / "out.jsonl")
    assert status == 0
    assert [c.user for c in load_cases(tmp_path / "out.jsonl")] == ["zipped"]


# --------------------------------------------------------------------------------------------
# Duplicates and ids
# --------------------------------------------------------------------------------------------


def test_duplicates_are_removed_across_files(tmp_path: Path, capsys: Capture) -> None:
    first = write_log(
        tmp_path / "a.jsonl",
        [
            plain("Where is my order?", "first answer", system="Be kind."),
            plain("Where   is my\norder? ", "second answer", system=" Be  kind."),
            plain("Where is my order?", "other system", system="Be terse."),
        ],
    )
    second = write_log(
        tmp_path / "b.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "Be kind."},
                    {"role": "user", "content": "Where is my order?"},
                    {"role": "assistant", "content": "third answer"},
                ]
            }
        ],
    )
    out = tmp_path / "out.jsonl"
    status, stdout, _ = run(capsys, first, second, "-o", out)
    assert status == 0
    assert "removed 2 duplicates" in stdout
    cases = load_cases(out)
    assert len(cases) == 2
    kind = next(c for c in cases if c.system == "Be kind.")
    assert kind.reference == "first answer"  # the first occurrence is kept
    assert kind.metadata["source"] == f"{first}:1"


def test_dedupe_function() -> None:
    records = [
        LogRecord("a:1", None, (("user", "hi  there"),), "x"),
        LogRecord("a:2", "", (("user", "hi there"),), "y"),
        LogRecord("a:3", None, (("user", "hi"), ("assistant", "yo"), ("user", "hi there")), "z"),
    ]
    kept, removed = dedupe(records)
    assert [r.source for r in kept] == ["a:1", "a:3"]
    assert removed == 1


def test_ids_are_stable_and_valid(tmp_path: Path, capsys: Capture) -> None:
    log = DATA / "openai.jsonl"
    one, two = tmp_path / "one" / "support.jsonl", tmp_path / "two" / "support.jsonl"
    assert run(capsys, log, "-o", one)[0] == 0
    assert run(capsys, log, "-o", two)[0] == 0
    ids = [c["id"] for c in case_lines(one)]
    assert ids == [c["id"] for c in case_lines(two)]
    assert case_lines(one) == case_lines(two)
    assert all(re.fullmatch(r"support-[0-9a-f]{10}", i) for i in ids)
    assert ids == sorted(ids)  # output order is by id

    # The id is the hash of the conversation only (not the answer, not whitespace).
    messages = (("user", "How long do I have to return boots?"),)
    system = "You are a support agent for Borealis Outdoor."
    assert case_id("support", system, messages) in ids
    assert case_id("x", system, messages) == case_id("x", "  " + system, messages)
    assert case_id("x", system, messages) != case_id("x", None, messages)


def test_id_prefix_option_and_default(tmp_path: Path, capsys: Capture) -> None:
    log = DATA / "plain.jsonl"
    assert run(capsys, log, "-o", tmp_path / "out.jsonl", "--id-prefix", "prod.qa")[0] == 0
    assert all(c["id"].startswith("prod.qa-") for c in case_lines(tmp_path / "out.jsonl"))
    # A stem that is not a valid id is made one.
    assert run(capsys, log, "-o", tmp_path / "_my cases!.jsonl")[0] == 0
    ids = [c["id"] for c in case_lines(tmp_path / "_my cases!.jsonl")]
    assert all(i.startswith("my-cases-") and ID_RE.match(i) for i in ids)


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def test_allocate_by_largest_remainder() -> None:
    assert allocate({"a": 5, "b": 3, "c": 2}, 4) == {"a": 2, "b": 1, "c": 1}
    assert allocate({"a": 600, "b": 300, "c": 100}, 100) == {"a": 60, "b": 30, "c": 10}
    assert allocate({"a": 1, "b": 1, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}  # ties by name
    assert allocate({"a": 2, "b": 1}, 10) == {"a": 2, "b": 1}
    shares = allocate({"x": 7, "y": 11, "z": 13, "w": 1}, 9)
    assert sum(shares.values()) == 9
    assert all(0 <= shares[k] <= n for k, n in {"x": 7, "y": 11, "z": 13, "w": 1}.items())


def test_stratified_sample_is_seeded() -> None:
    items = list(range(100))

    def stratum(i: int) -> str:
        return "even" if i % 2 == 0 else "odd"

    first, report = stratified_sample(items, 10, stratum, seed=3)
    again, _ = stratified_sample(items, 10, stratum, seed=3)
    other, _ = stratified_sample(items, 10, stratum, seed=4)
    assert first == again
    assert first != other
    assert first == sorted(first)
    assert report == {"even": (5, 50), "odd": (5, 50)}
    assert sum(1 for i in first if i % 2 == 0) == 5


def traffic(n_a: int, n_b: int, n_c: int) -> list[dict[str, Any]]:
    records = []
    for endpoint, n in (("/a", n_a), ("/b", n_b), ("/c", n_c)):
        records += [plain(f"{endpoint} question {i}", endpoint=endpoint) for i in range(n)]
    return records


def test_stratified_by_endpoint_proportions(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(tmp_path / "log.jsonl", traffic(600, 300, 100))
    out = tmp_path / "out.jsonl"
    status, stdout, _ = run(
        capsys, log, "-o", out, "--size", "100", "--stratify-by", "endpoint", "--seed", "7"
    )
    assert status == 0
    assert "sampled 100 of 1000 unique records, stratified by endpoint (seed 7)" in stdout
    assert re.search(r"/a\s+60 of 600", stdout)
    assert re.search(r"/c\s+10 of 100", stdout)
    counts = Counter(c.metadata["endpoint"] for c in load_cases(out))
    assert counts == {"/a": 60, "/b": 30, "/c": 10}


def test_sampling_is_deterministic_with_a_seed(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(tmp_path / "log.jsonl", traffic(300, 200, 100))
    outputs = {}
    for name, seed in (("one", "1"), ("two", "1"), ("three", "2")):
        out = tmp_path / f"{name}.jsonl"
        args = ["--size", "50", "--stratify-by", "metadata.endpoint", "--seed", seed]
        assert run(capsys, log, "-o", out, "--id-prefix", "t", *args)[0] == 0
        outputs[name] = case_lines(out)
    assert outputs["one"] == outputs["two"]
    assert outputs["one"] != outputs["three"]
    ids = [c["id"] for c in outputs["one"]]
    assert ids == sorted(ids)
    assert len(ids) == 50


def test_unstratified_sample_to_size(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(tmp_path / "log.jsonl", traffic(250, 0, 0))
    status, stdout, err = run(capsys, log, "-o", tmp_path / "out.jsonl")
    assert status == 0
    assert "kept all 250 unique records (--size is 300)" in stdout
    assert "warning" not in err
    status, stdout, err = run(capsys, log, "-o", tmp_path / "o2.jsonl", "--size", "210")
    assert "sampled 210 of 250 unique records (seed 0)" in stdout
    assert len(load_cases(tmp_path / "o2.jsonl")) == 210


def test_length_bands_and_strata() -> None:
    assert length_band("x" * 199) == "short"
    assert length_band("x" * 200) == "medium"
    assert length_band("x" * 999) == "medium"
    assert length_band("x" * 1000) == "long"
    record = LogRecord(
        "f:1",
        None,
        (("user", "x" * 500), ("assistant", "y"), ("user", "short one")),
        "ok",
        model="gpt-4o",
        fields={"endpoint": "/a", "route": {"region": "eu"}, "tags": ["x", "y"], "n": 3},
    )
    assert stratum_of(record, "length") == "short"  # the last user turn
    assert stratum_of(record, "model") == "gpt-4o"
    assert stratum_of(record, "endpoint") == "/a"
    assert stratum_of(record, "metadata.endpoint") == "/a"
    assert stratum_of(record, "metadata.route.region") == "eu"
    assert stratum_of(record, "tag") == "x,y"
    assert stratum_of(record, "n") == "3"
    assert stratum_of(record, "metadata.missing") == "(none)"
    gateway = LogRecord("g:1", None, (("user", "q"),), "a", fields={"request_tags": ["sql", "eu"]})
    assert stratum_of(gateway, "tag") == "sql,eu"  # LiteLLM's request_tags


def test_stratify_by_length(tmp_path: Path, capsys: Capture) -> None:
    records = [plain(f"q{i} " + "x" * 300) for i in range(50)]
    records += [plain(f"q{i}") for i in range(150)]
    log = write_log(tmp_path / "log.jsonl", records)
    out = tmp_path / "out.jsonl"
    status, _, _ = run(capsys, log, "-o", out, "--size", "40", "--stratify-by", "length")
    assert status == 0
    bands = Counter(length_band(c.user) for c in load_cases(out))
    assert bands == {"short": 30, "medium": 10}


def test_stratify_by_a_missing_field_warns(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(tmp_path / "log.jsonl", traffic(10, 0, 0))
    status, _, err = run(
        capsys, log, "-o", tmp_path / "o.jsonl", "--size", "5", "--stratify-by", "endpint"
    )
    assert status == 0
    assert "no record has the field 'endpint'; the sample is not stratified" in err


# --------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        (
            "my key is sk-proj-abc123DEF456ghi789JKL012mno, thanks",
            "api_key",
            "my key is [REDACTED_API_KEY], thanks",
        ),
        ("sk-ant-api03-AbCdEf0123456789_-xyzXYZ0123456789abcd", "api_key", "[REDACTED_API_KEY]"),
        ("id AKIAIOSFODNN7EXAMPLE ok", "api_key", "id [REDACTED_API_KEY] ok"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "api_key",
            "aws_secret_access_key = [REDACTED_API_KEY]",
        ),
        ("ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij12", "api_key", "[REDACTED_API_KEY]"),
        (
            "Authorization: Bearer abc123def456ghi789",
            "token",
            "Authorization: Bearer [REDACTED_TOKEN]",
        ),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_Xg",
            "token",
            "jwt [REDACTED_TOKEN]",
        ),
        ("write to jane.doe+shop@example.co.uk.", "email", "write to [REDACTED_EMAIL]."),
        ("card 4111 1111 1111 1111 exp 12/27", "card", "card [REDACTED_CARD] exp 12/27"),
        ("card 4111-1111-1111-1111", "card", "card [REDACTED_CARD]"),
        ("card 5500005555555559.", "card", "card [REDACTED_CARD]."),
        ("amex 3782 822463 10005", "card", "amex [REDACTED_CARD]"),
        ("call +44 20 7946 0958 now", "phone", "call [REDACTED_PHONE] now"),
        ("call +1 (415) 555-0132", "phone", "call [REDACTED_PHONE]"),
        ("whatsapp +4915112345678", "phone", "whatsapp [REDACTED_PHONE]"),
        ("dial 0044 20 7946 0958", "phone", "dial [REDACTED_PHONE]"),
        ("US (415) 555-0132", "phone", "US [REDACTED_PHONE]"),
        ("US 415-555-0132 or 415.555.0132", "phone", "US [REDACTED_PHONE] or [REDACTED_PHONE]"),
        ("toll free 1-800-555-0199", "phone", "toll free [REDACTED_PHONE]"),
        ("UK 020 7946 0958", "phone", "UK [REDACTED_PHONE]"),
        ("mobile 07700 900123", "phone", "mobile [REDACTED_PHONE]"),
        ("FR 01 23 45 67 89", "phone", "FR [REDACTED_PHONE]"),
        ("DE (030) 1234567", "phone", "DE [REDACTED_PHONE]"),
        ("my phone number is 5551234567", "phone", "my phone number is [REDACTED_PHONE]"),
        ("Tel: 07700900123", "phone", "Tel: [REDACTED_PHONE]"),
    ],
)
def test_redacts_each_kind(text: str, kind: str, expected: str) -> None:
    redacted, counts = redact(text)
    assert redacted == expected
    assert set(counts) == {kind}


@pytest.mark.parametrize(
    "text",
    [
        "In 2024 we sold 1,250 units at $19.99 each, up from 1999.",
        "Order #100234567 shipped on 2024-03-15 and arrives 15.03.2024 or 03/15/2024.",
        "Order 1234567890123456, order id ORD-2024-001234, invoice INV-2291",
        "Total 1,249.50 EUR or €1 299,00 or $1,000,000 or 12 500 000 yen",
        "Call between 9:00 and 17:30; version 1.2.3; IP 192.168.0.1; ZIP 90210",
        "Population 1 000 000; years 1990-2000; pages 120-135",
        "Tracking 1Z999AA10123456784; ISBN 978-3-16-148410-0",
        "the bearer of bad news; Bearer authentication is described in RFC 6750",
        "uses sk-learn and scikit-learn; sk-this-is-not-a-key-at-all",
        "growth +12.5% at +48.8566, 2.3522",
        "timestamp 2024-05-01T12:30:00Z, unix time 1714566600",
        "4111 1111 1111 1112 fails the Luhn check",
        "user@localhost, @property, pkg@1.2.3",
        "call me on 12.05.2024",
        "sizes 0.5 0.75 and 05.11.2024 10:30",
        "account 12345678, sort code 20-00-00",
        "iPhone 15 Pro 256 GB at 36.6 degrees",
        "Luhn-valid but not a card prefix: 1234567812345670",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert redact(text) == (text, Counter())


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")


def test_redaction_covers_every_text_and_is_counted(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(
        tmp_path / "log.jsonl",
        [
            {
                "request": {
                    "model": "claude-sonnet-4-5",
                    "system": "Internal key sk-ant-api03-AbCdEf0123456789xyzXYZ0123456789",
                    "messages": [
                        {"role": "user", "content": "I am ann@example.com"},
                        {"role": "assistant", "content": "Your number, +44 20 7946 0958?"},
                        {"role": "user", "content": "Yes. Card 4111 1111 1111 1111."},
                    ],
                },
                "response": {"content": [{"type": "text", "text": "Mailed bob@example.org."}]},
                "notes": "contact carol@example.net",
            }
        ],
    )
    out = tmp_path / "out.jsonl"
    status, stdout, _ = run(capsys, log, "-o", out)
    assert status == 0
    assert "redacted: 1 API key, 3 email addresses, 1 card number, 1 phone number" in stdout
    text = out.read_text()
    for secret in ("sk-ant", "example.com", "example.org", "example.net", "7946", "4111"):
        assert secret not in text
    (case,) = load_cases(out)
    assert case.system == "Internal key [REDACTED_API_KEY]"
    assert case.messages[0].content == "I am [REDACTED_EMAIL]"
    assert case.messages[1].content == "Your number, [REDACTED_PHONE]?"
    assert case.reference == "Mailed [REDACTED_EMAIL]."
    assert case.metadata["notes"] == "contact [REDACTED_EMAIL]"


def test_no_redact_keeps_text_and_warns(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(tmp_path / "log.jsonl", [plain("I am ann@example.com")])
    out = tmp_path / "out.jsonl"
    status, stdout, err = run(capsys, log, "-o", out, "--no-redact")
    assert status == 0
    assert "redaction is off" in err
    assert "redacted:" not in stdout
    assert load_cases(out)[0].user == "I am ann@example.com"


def test_conversations_equal_after_redaction_are_duplicates(
    tmp_path: Path, capsys: Capture
) -> None:
    log = write_log(
        tmp_path / "log.jsonl", [plain("Reset for ann@example.com"), plain("Reset for b@x.io")]
    )
    status, stdout, _ = run(capsys, log, "-o", tmp_path / "out.jsonl")
    assert status == 0
    assert "removed 1 duplicate" in stdout
    assert "redacted: 1 email address" in stdout  # counted in the written cases only


def test_user_ids_are_dropped_unless_kept(tmp_path: Path, capsys: Capture) -> None:
    record = plain("hi", user_id="u1", userId="u2", metadata={"customer_id": "c", "plan": "pro"})
    log = write_log(tmp_path / "log.jsonl", [record])
    status, stdout, _ = run(capsys, log, "-o", tmp_path / "a.jsonl")
    assert status == 0
    assert "dropped 3 user-id fields (customer_id, userId, user_id)" in stdout
    metadata = load_cases(tmp_path / "a.jsonl")[0].metadata
    assert set(metadata) == {"source", "plan"}
    status, _, _ = run(capsys, log, "-o", tmp_path / "b.jsonl", "--keep-user-ids")
    metadata = load_cases(tmp_path / "b.jsonl")[0].metadata
    assert metadata["user_id"] == "u1"
    assert metadata["customer_id"] == "c"


def test_stratify_by_a_dropped_user_field(tmp_path: Path, capsys: Capture) -> None:
    records = [plain(f"q{i}", user_id="heavy" if i < 8 else "light") for i in range(10)]
    log = write_log(tmp_path / "log.jsonl", records)
    out = tmp_path / "out.jsonl"
    status, stdout, _ = run(capsys, log, "-o", out, "--size", "5", "--stratify-by", "user_id")
    assert status == 0
    assert re.search(r"heavy\s+4 of 8", stdout)
    assert all("user_id" not in c.metadata for c in load_cases(out))


# --------------------------------------------------------------------------------------------
# The written file
# --------------------------------------------------------------------------------------------


def test_output_file_format(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "golden_cases" / "support.jsonl"  # the directory is created
    status, stdout, _ = run(
        capsys,
        DATA / "openai.jsonl",
        "-o",
        out,
        "--tag",
        "imported",
        "--tag",
        "support",
        "--tag",
        "imported",
    )
    assert status == 0
    sidecar = out.parent / "support.import.json"
    assert f"wrote 3 cases to {out} (provenance in {sidecar})" in stdout
    body = case_lines(out)  # one case object per line, nothing else
    assert len(body) == 3
    assert [case["id"] for case in body] == sorted(case["id"] for case in body)
    for case in body:
        keys = list(case)
        assert keys[0] == "id"
        assert keys[-3:] == ["reference", "tags", "metadata"]
        assert "threshold" not in case
        assert "scorers" not in case
        assert case["tags"] == ["imported", "support"]
        assert next(iter(case["metadata"])) == "source"
    cases = load_cases(out)
    assert all(c.tags == ("imported", "support") for c in cases)
    # No temp file left.
    assert sorted(p.name for p in out.parent.iterdir()) == ["support.import.json", "support.jsonl"]


def test_refuses_to_overwrite_without_force(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("// keep me\n")
    status, stdout, err = run(capsys, DATA / "plain.jsonl", "-o", out)
    assert status == 2
    assert f"{out} exists; pass --force to overwrite it" in err
    assert stdout == ""
    assert out.read_text() == "// keep me\n"
    status, _, _ = run(capsys, DATA / "plain.jsonl", "-o", out, "--force")
    assert status == 0
    assert len(load_cases(out)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.import.json", "out.jsonl"]


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------


def test_provenance_file(tmp_path: Path, capsys: Capture) -> None:
    small = write_log(tmp_path / "small.jsonl", [plain("Mail ann@example.com please"), "oops"])
    out = tmp_path / "golden_cases" / "gateway.jsonl"
    args = [str(LITELLM), str(RESPONSES), str(small), "-o", str(out)]
    args += ["--stratify-by", "call_type", "--seed", "3", "--tag", "imported", "--tag", "imported"]
    status, stdout, err = run(capsys, *args)
    assert status == 0, err
    sidecar = tmp_path / "golden_cases" / "gateway.import.json"
    assert f"(provenance in {sidecar})" in stdout
    assert len(case_lines(out)) == 7  # the golden file holds cases only

    doc = json.loads(sidecar.read_text(encoding="utf-8"))
    assert list(doc) == [
        "version",
        "golden_file",
        "imported_at",
        "tool",
        "command",
        "options",
        "sources",
        "counts",
        "log_formats",
        "strata",
        "redactions",
        "dropped_user_id_fields",
    ]
    assert doc["version"] == 1
    assert doc["golden_file"] == "gateway.jsonl"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["imported_at"])
    assert doc["tool"] == {"name": "pytest-llmregress", "version": __version__}
    tags = ["--tag", "imported", "--tag", "imported"]
    assert doc["command"] == shlex.join(
        ["llmregress", "import", *args[:5], "--size", "300", *args[5:9], *tags]
    )
    assert doc["options"] == {
        "format": "auto",
        "size": 300,
        "stratify_by": "call_type",
        "seed": 3,
        "id_prefix": "gateway",
        "tags": ["imported"],
        "redact": True,
        "redactors": [],
        "keep_user_ids": False,
    }
    assert doc["sources"] == [
        {
            "path": str(path),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "lines": lines,
            "records": records,
            "malformed": malformed,
        }
        for path, lines, records, malformed in (
            (LITELLM, 3, 3, 0),
            (RESPONSES, 3, 3, 0),
            (small, 2, 1, 1),
        )
    ]
    assert doc["counts"] == {
        "records": 7,
        "malformed": 1,
        "duplicates": 0,
        "unique": 7,
        "cases": 7,
    }
    assert doc["log_formats"] == {"litellm": 3, "plain": 1, "responses": 3}
    assert doc["strata"] == {
        "(none)": {"selected": 4, "available": 4},
        "acompletion": {"selected": 2, "available": 2},
        "aresponses": {"selected": 1, "available": 1},
    }
    assert doc["redactions"] == {
        "api_key": 0,
        "token": 0,
        "private_key": 0,
        "password": 0,
        "secret": 0,
        "email": 1,
        "card": 0,
        "iban": 0,
        "national_id": 0,
        "phone": 0,
    }
    assert doc["dropped_user_id_fields"] == {"end_user": 1, "user_id": 1}


def test_provenance_without_redaction_or_strata(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "qa.jsonl"
    status, _, _ = run(capsys, DATA / "plain.jsonl", "-o", out, "--no-redact", "--format", "plain")
    assert status == 0
    doc = json.loads((tmp_path / "qa.import.json").read_text(encoding="utf-8"))
    assert doc["redactions"] is None
    assert doc["strata"] is None
    assert doc["options"]["redact"] is False
    assert doc["command"].endswith(" --format plain --size 300 --seed 0 --no-redact")
    assert doc["sources"][0]["lines"] == 3  # the blank line is a line, neither record nor error
    assert doc["sources"][0]["malformed"] == 0


def test_the_golden_file_holds_no_import_time(tmp_path: Path) -> None:
    options = ImportOptions(logs=(str(RESPONSES), str(LITELLM)), output=tmp_path / "r.jsonl")
    first = import_logs(options, now=datetime(2026, 3, 10, 9, 30, tzinfo=UTC))
    later = import_logs(
        options, now=datetime(2026, 4, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    )
    assert first.text == later.text  # a re-import gives the same file, byte for byte
    assert "2026-03-10" not in first.text
    assert first.provenance["imported_at"] == "2026-03-10T09:30:00Z"
    assert later.provenance["imported_at"] == "2026-04-01T12:00:00Z"  # in UTC
    assert {**first.provenance, "imported_at": ""} == {**later.provenance, "imported_at": ""}
    assert json.loads(first.provenance_text) == first.provenance
    assert first.provenance_text.endswith("}\n")


def test_refuses_to_overwrite_a_provenance_file_without_force(
    tmp_path: Path, capsys: Capture
) -> None:
    out = tmp_path / "out.jsonl"
    sidecar = tmp_path / "out.import.json"
    sidecar.write_text("{}\n")
    status, stdout, err = run(capsys, DATA / "plain.jsonl", "-o", out)
    assert status == 2
    assert f"{sidecar} exists; pass --force to overwrite it" in err
    assert stdout == ""
    assert not out.exists()
    assert sidecar.read_text() == "{}\n"
    status, _, _ = run(capsys, DATA / "plain.jsonl", "-o", out, "--force")
    assert status == 0
    assert json.loads(sidecar.read_text())["counts"]["cases"] == 2


def test_a_log_named_like_the_provenance_file_is_refused(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(tmp_path / "out.import.json", [plain("hi")])
    status, _, err = run(capsys, log, "-o", tmp_path / "out.jsonl", "--force")
    assert status == 2
    assert f"{log} is both an input and the provenance file" in err
    assert log.read_text() == json.dumps(plain("hi")) + "\n"


def test_small_set_warning(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(tmp_path / "log.jsonl", traffic(100, 0, 0))
    status, _, err = run(capsys, log, "-o", tmp_path / "out.jsonl")
    assert status == 0
    match = re.search(
        r"warning: only 100 cases: too small to see a regression of a few points; with 100 "
        r"cases only pass-rate drops of about (\d+) points or more are visible",
        err,
    )
    assert match
    assert 8 <= int(match.group(1)) <= 12

    log = write_log(tmp_path / "big.jsonl", traffic(200, 0, 0))
    status, _, err = run(capsys, log, "-o", tmp_path / "big-out.jsonl")
    assert status == 0
    assert "too small" not in err


def test_the_dispatcher_runs_import(tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "out.jsonl"
    assert cli.main(["import", str(DATA / "plain.jsonl"), "-o", str(out)]) == 0
    assert "wrote 2 cases" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# Exit statuses and usage errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{log}"], "required: -o/--output"),
        (["{log}", "-o", "{tmp}/out.yaml"], "the output must be a .jsonl file"),
        (["{tmp}/missing.jsonl", "-o", "{tmp}/out.jsonl"], "missing.jsonl: no such file"),
        (["{tmp}", "-o", "{tmp}/out.jsonl"], "is a directory"),
        (["{log}", "-o", "{tmp}/out.jsonl", "--size", "0"], "expected a number of cases >= 1"),
        (["{log}", "-o", "{tmp}/out.jsonl", "--format", "csv"], "invalid choice: 'csv'"),
        (["{log}", "-o", "{tmp}/out.jsonl", "--tag", "not"], "keyword"),
        (["{log}", "-o", "{tmp}/out.jsonl", "--tag", "has space"], "has space"),
        (["{log}", "-o", "{tmp}/out.jsonl", "--id-prefix", "_bad"], "--id-prefix '_bad'"),
        (["{log}", "-o", "{tmp}/out.jsonl", "--stratify-by", "metadata."], "--stratify-by"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, capsys: Capture, args: list[str], message: str
) -> None:
    filled = [a.format(log=DATA / "plain.jsonl", tmp=tmp_path) for a in args]
    status, _, err = run(capsys, *filled)
    assert status == 2
    assert message in err
    assert not (tmp_path / "out.jsonl").exists()


def test_input_equal_to_output_is_refused(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(tmp_path / "log.jsonl", [plain("hi")])
    status, _, err = run(capsys, log, "-o", log, "--force")
    assert status == 2
    assert "both an input and the output" in err


def test_help_exits_0(capsys: Capture) -> None:
    status, stdout, _ = run(capsys, "--help")
    assert status == 0
    assert "--stratify-by" in stdout
    assert "{auto,openai,anthropic,responses,litellm,plain}" in stdout


def test_no_case_exits_1(tmp_path: Path, capsys: Capture) -> None:
    log = write_log(tmp_path / "log.jsonl", ["{}", "garbage"])
    out = tmp_path / "out.jsonl"
    status, _, err = run(capsys, log, "-o", out)
    assert status == 1
    assert f"{log}:1: skipped" in err
    assert f"{log}:2: skipped" in err
    assert "no cases to write" in err
    assert not out.exists()


def test_empty_log_exits_1(tmp_path: Path, capsys: Capture) -> None:
    log = tmp_path / "empty.jsonl"
    log.write_text("")
    status, stdout, _ = run(capsys, log, "-o", tmp_path / "out.jsonl")
    assert status == 1
    assert "read 0 records from 1 file" in stdout


def test_unreadable_gzip_exits_1(tmp_path: Path, capsys: Capture) -> None:
    log = tmp_path / "log.jsonl.gz"
    log.write_bytes(b"not gzip at all")
    status, _, err = run(capsys, log, "-o", tmp_path / "out.jsonl")
    assert status == 1
    assert "cannot read the logs" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_stdin(tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (json.dumps(plain("from a pipe")) + "\nbad\n").encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    status, _, err = run(capsys, "-", "-o", tmp_path / "out.jsonl")
    assert status == 0
    assert "<stdin>:2: skipped: invalid JSON" in err
    (case,) = load_cases(tmp_path / "out.jsonl")
    assert case.metadata["source"] == "<stdin>:1"
