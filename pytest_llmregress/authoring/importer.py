"""``llmregress import``: turn production request/response logs into a golden file.

The best golden cases are real traffic. This module reads JSONL logs in five shapes (OpenAI
chat, Anthropic messages, OpenAI Responses API, LiteLLM gateway logs, plain
``{input, output}``), removes duplicate conversations, samples to a target size stratified by
a chosen field, redacts secrets and personal data, and writes a JSONL golden file that
:func:`~pytest_llmregress.cases.golden.load_cases` loads, with stable ids so re-importing
the same log gives the same cases. The golden file is plain JSON Lines (one case object per line, no
comments); each case's origin is in its ``metadata``, and what the import did is in a
provenance file next to it (``NAME.import.json``).

The pipeline, each step a function usable on its own:

1. :func:`read_logs` / :func:`parse_record`: one :class:`LogRecord` per good line; every bad
   line becomes a :class:`Malformed` naming its file and line.
2. :func:`redact_record`: typed placeholders such as ``[REDACTED_EMAIL]`` in system,
   messages, reference and metadata keys and values, by the rules of
   :mod:`~pytest_llmregress.authoring.redaction` and the team's ``--redactor`` functions
   (skipped with ``--no-redact``).
3. :func:`dedupe`: one record per conversation (system + messages, whitespace normalized).
4. :func:`stratified_sample`: proportional allocation by largest remainder, seeded.
5. :func:`to_case` / :func:`render_jsonl` / :func:`provenance` / :func:`write_atomic`: the
   golden file and its provenance file.

The command, ``llmregress import``, is :mod:`pytest_llmregress.cli.import_logs`. Users'
documentation: ``docs/importing-traffic.md``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import random
import re
import shlex
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, TypeVar, cast

from pytest_llmregress import __version__
from pytest_llmregress.authoring.redaction import (
    REDACTION_KINDS,
    Redactor,
    RedactorError,
    RedactorSpecError,
    count_placeholders,
    default_redactor,
    load_redactor,
    luhn_ok,
    redact,
    redact_data,
)
from pytest_llmregress.cases.golden import CaseFileError, parse_jsonl
from pytest_llmregress.core.files import atomic_write_text
from pytest_llmregress.core.validation import type_name

__all__ = [
    "DEFAULT_SIZE",
    "FORMATS",
    "PROVENANCE_SUFFIX",
    "PROVENANCE_VERSION",
    "REDACTION_KINDS",
    "SMALL_SET",
    "ImportOptions",
    "ImportResult",
    "LogRecord",
    "Malformed",
    "ReadResult",
    "RecordError",
    "SourceStats",
    "UsageError",
    "allocate",
    "build_redactor",
    "case_id",
    "check_options",
    "command_line",
    "conversation_key",
    "dedupe",
    "default_prefix",
    "detect_format",
    "detectable_drop",
    "import_logs",
    "length_band",
    "luhn_ok",
    "parse_record",
    "provenance",
    "provenance_path",
    "read_logs",
    "redact",
    "redact_record",
    "render_jsonl",
    "stratified_sample",
    "stratum_of",
    "to_case",
    "write_atomic",
]

PROG: Final = "llmregress import"

Format = Literal["auto", "openai", "anthropic", "responses", "litellm", "plain"]
FORMATS: Final[tuple[Format, ...]] = (
    "auto",
    "openai",
    "anthropic",
    "responses",
    "litellm",
    "plain",
)
"""Values of ``--format``; ``auto`` detects the shape of each line."""

DEFAULT_SIZE: Final = 300
"""Default target number of cases."""

SMALL_SET: Final = 200
"""Below this many cases the import warns that a few points of regression are invisible."""

ID_HASH_LENGTH: Final = 10
"""Hex digits of the conversation's sha256 in a case id."""

SHORT_LIMIT: Final = 200
MEDIUM_LIMIT: Final = 1000
"""``length`` strata: the user input is short below 200 characters, medium below 1000."""

MAX_SHOWN_MALFORMED: Final = 50
"""Malformed lines listed per file; the rest are counted in one line."""

MAX_SHOWN_STRATA: Final = 30

PROVENANCE_SUFFIX: Final = ".import.json"
"""``NAME.jsonl`` gets its provenance in ``NAME.import.json``, next to it."""

PROVENANCE_VERSION: Final = 1
"""``version`` of the provenance document; raised when a field changes meaning."""

ASSUMED_DISCORDANCE: Final = 0.10
"""Share of cases assumed to change verdict between two models, for the small-set warning."""

_Z_ALPHA: Final = 1.959963984540054  # two-sided 5%
_Z_POWER: Final = 0.8416212335729143  # 80% power
_MIN_FLIPS: Final = 6  # fewest one-way flips the exact McNemar test finds significant at 5%

MISSING: Final = "(none)"
"""Stratum of a record that lacks the stratification field (or has null)."""

KIND_NAMES: Final = {
    "api_key": ("API key", "API keys"),
    "token": ("token", "tokens"),
    "private_key": ("private key", "private keys"),
    "password": ("password", "passwords"),
    "secret": ("secret", "secrets"),
    "email": ("email address", "email addresses"),
    "card": ("card number", "card numbers"),
    "iban": ("IBAN", "IBANs"),
    "national_id": ("national id number", "national id numbers"),
    "phone": ("phone number", "phone numbers"),
}

_CASE_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# Top-level log fields that hold user identities; matched after lower-casing and removing
# everything but letters and digits (so user_id, userId and User-ID all match).
_USER_ID_KEYS: Final = frozenset(
    {
        "user",
        "userid",
        "uid",
        "username",
        "useremail",
        "email",
        "enduser",
        "enduserid",
        "customer",
        "customerid",
        "accountid",
        "ip",
        "ipaddress",
        "clientip",
        "remoteip",
        "remoteaddr",
    }
)

_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


class RecordError(ValueError):
    """A log line that cannot become a case; the message says why."""


class UsageError(Exception):
    """Bad command-line arguments or paths (exit status 2)."""


@dataclass(frozen=True)
class LogRecord:
    """One logged exchange: the conversation up to the last user turn and the logged answer.

    ``messages`` is a tuple of ``(role, content)`` with roles ``user``/``assistant`` ending with
    ``user``. ``fields`` are the log's extra top-level fields and the contents of its
    ``metadata`` object (user ids included; they are dropped when the case is written).
    ``redactions`` counts the placeholders :func:`redact_record` wrote.
    """

    source: str
    system: str | None
    messages: tuple[tuple[str, str], ...]
    reference: str
    model: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    truncated: bool = False
    format: str = ""
    redactions: Mapping[str, int] = field(default_factory=dict)

    @property
    def user(self) -> str:
        """The last user message: the prompt under test."""
        return self.messages[-1][1]


@dataclass(frozen=True)
class Malformed:
    """A log line that was skipped, and why."""

    path: str
    line: int
    message: str

    def format(self) -> str:
        return f"{self.path}:{self.line}: skipped: {self.message}"


@dataclass
class SourceStats:
    """One log file as read: its SHA-256 (of the decompressed bytes for ``.gz``) and counts."""

    path: str
    sha256: str
    lines: int
    records: int
    malformed: int


@dataclass
class ReadResult:
    """What :func:`read_logs` found: the good records, the skipped lines, each file's stats."""

    records: list[LogRecord] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    lines: int = 0
    files: int = 0
    sources: list[SourceStats] = field(default_factory=list)


def _kind(value: object) -> str:
    """``a string``, ``an object``: a JSON value's kind, as the messages of the importer say."""
    return type_name(value, article=True, json=True)


_TEXT_PARTS: Final = frozenset({"text", "input_text", "output_text"})
# Reasoning that is not part of the answer; dropped from assistant turns.
_DROPPED_PARTS: Final = frozenset({"thinking", "redacted_thinking", "reasoning"})


def _content_text(content: object, where: str, *, joiner: str, allow_reasoning: bool) -> str:
    """The text of a message content: a string, or a list of text parts/blocks."""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts: list[str] = []
        for i, part in enumerate(content):
            if not isinstance(part, dict):
                raise RecordError(f"{where}[{i}]: expected a content block, got {_kind(part)}")
            kind = part.get("type")
            if kind in _TEXT_PARTS:
                text_value = part.get("text")
                if not isinstance(text_value, str):
                    raise RecordError(
                        f"{where}[{i}].text: expected a string, got {_kind(text_value)}"
                    )
                texts.append(text_value)
            elif kind in _DROPPED_PARTS and allow_reasoning:
                continue
            else:
                raise RecordError(
                    f"{where}[{i}]: non-text content ({kind!r}); only text conversations "
                    "can be imported"
                )
        text = joiner.join(texts)
    elif content is None:
        raise RecordError(f"{where}: no content")
    else:
        raise RecordError(f"{where}: expected text, got {_kind(content)}")
    if not text.strip():
        raise RecordError(f"{where}: empty text")
    return text


def _system_text(value: object, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    return _content_text(value, where, joiner="\n\n", allow_reasoning=False)


# Items of a Responses API conversation that hold no conversation text: the model's reasoning
# is not part of what the user saw.
_SKIPPED_ITEMS: Final = frozenset({"reasoning"})


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _conversation(messages: object, where: str) -> tuple[list[str], list[tuple[str, str]]]:
    """System texts and ``(role, content)`` turns of a chat message list.

    A Responses API input item list reads the same way: ``message`` items (with or without
    their ``type``) are messages, ``reasoning`` items are skipped, and any other item
    (function calls and their outputs, item references, ...) is an error.
    """
    if not isinstance(messages, list) or not messages:
        got = "an empty list" if isinstance(messages, list) else _kind(messages)
        raise RecordError(f"{where}: expected a non-empty list of messages, got {got}")
    systems: list[str] = []
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        at = f"{where}[{i}]"
        if not isinstance(message, dict):
            raise RecordError(f"{at}: expected a message object, got {_kind(message)}")
        item = message.get("type") or "message"
        if item in _SKIPPED_ITEMS:
            continue
        if item != "message":
            raise RecordError(
                f"{at}: {item!r} items are not supported; only text conversations can be imported"
            )
        role = message.get("role")
        if role in ("system", "developer"):
            text = _system_text(message.get("content"), f"{at}.content")
            if text is not None:
                systems.append(text)
        elif role in ("user", "assistant"):
            if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
                raise RecordError(
                    f"{at}: assistant tool calls are not supported; only text conversations "
                    "can be imported"
                )
            text = _content_text(
                message.get("content"),
                f"{at}.content",
                joiner="\n\n",
                allow_reasoning=role == "assistant",
            )
            turns.append((role, text))
        elif role in ("tool", "function"):
            raise RecordError(
                f"{at}: {role} messages are not supported; only text conversations can be imported"
            )
        else:
            raise RecordError(f"{at}.role: unknown role {role!r}")
    return systems, turns


def _check_ends_with_user(turns: list[tuple[str, str]], where: str) -> None:
    if not turns:
        raise RecordError(f"{where}: no user message")
    if turns[-1][0] != "user":
        raise RecordError(
            f"{where}: the conversation ends with an assistant message; expected the user's turn"
        )


def _add_system(systems: list[str], text: str | None) -> None:
    """Put a request-level system prompt first, unless the messages already hold it."""
    if text is not None and text not in systems:
        systems.insert(0, text)


def _instructions(value: object, where: str) -> str | None:
    """A Responses API ``instructions``: a string, or a list of system/developer messages."""
    if value is None or isinstance(value, str):
        return _system_text(value, where)
    systems, turns = _conversation(value, where)
    if turns:
        raise RecordError(
            f"{where}: expected system or developer messages, got a {turns[0][0]} message"
        )
    return "\n\n".join(systems) or None


def _responses_input(value: object, where: str) -> tuple[list[str], list[tuple[str, str]]]:
    """System texts and turns of a Responses API ``input``: a string or a list of items."""
    if isinstance(value, str):
        if not value.strip():
            raise RecordError(f"{where}: empty text")
        return [], [("user", value)]
    if value is None:
        raise RecordError(f"{where}: missing (no user input)")
    if not isinstance(value, list):
        raise RecordError(
            f"{where}: expected a string or a list of input items, got {_kind(value)}"
        )
    return _conversation(value, where)


def _request_conversation(
    request: Mapping[str, Any], where: str
) -> tuple[list[str], list[tuple[str, str]], str]:
    """System texts, turns and the path of the turns of a logged request body.

    A chat or messages request has ``messages`` (and Anthropic's top-level ``system``, which
    some gateways log for OpenAI requests too); a Responses API request has ``input`` and
    ``instructions``.
    """
    if "input" in request and "messages" not in request:
        at = _at(where, "input")
        systems, turns = _responses_input(request.get("input"), at)
        _add_system(systems, _instructions(request.get("instructions"), _at(where, "instructions")))
    else:
        at = _at(where, "messages")
        systems, turns = _conversation(request.get("messages"), at)
        _add_system(systems, _system_text(request.get("system"), _at(where, "system")))
    return systems, turns, at


def _check_self_contained(obj: Mapping[str, Any], where: str) -> None:
    """Refuse a Responses API call whose context OpenAI stored instead of the log."""
    if obj.get("previous_response_id"):
        raise RecordError(
            f"{_at(where, 'previous_response_id')}: the conversation continues a stored "
            "response whose earlier turns are not in the log; only self-contained "
            "conversations can be imported"
        )
    if obj.get("conversation"):
        raise RecordError(
            f"{_at(where, 'conversation')}: the earlier turns are stored in an OpenAI "
            "conversation, not in the log; only self-contained conversations can be imported"
        )
    if isinstance(obj.get("prompt"), dict):
        raise RecordError(
            f"{_at(where, 'prompt')}: the instructions come from a stored prompt template "
            "that is not in the log; only self-contained requests can be imported"
        )


def _response_shape(response: Mapping[str, Any]) -> str | None:
    """``openai`` (chat completion), ``responses`` or ``anthropic`` for a response object."""
    if "choices" in response:
        return "openai"
    if "output" in response or response.get("object") == "response":
        return "responses"
    if "content" in response or response.get("type") == "message":
        return "anthropic"
    return None


def _is_error(response: Mapping[str, Any]) -> bool:
    # Responses API objects always carry "error", null when the call succeeded.
    return bool(response.get("error")) or response.get("type") == "error"


def _chat_answer(response: Mapping[str, Any], where: str) -> tuple[str, bool]:
    """The text of a chat completion's first choice, and whether it was cut off."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        raise RecordError(f"{where}.choices: no choices (no assistant output)")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise RecordError(f"{where}.choices[0].message: no message (no assistant output)")
    if message.get("tool_calls") or message.get("function_call"):
        raise RecordError(
            f"{where}.choices[0].message: the answer is a tool call; only text answers "
            "can be imported"
        )
    if message.get("content") is None:
        raise RecordError(f"{where}.choices[0].message.content: no assistant output")
    text = _content_text(
        message.get("content"),
        f"{where}.choices[0].message.content",
        joiner="",
        allow_reasoning=True,
    )
    return text, isinstance(choice, dict) and choice.get("finish_reason") == "length"


def _anthropic_answer(response: Mapping[str, Any], where: str) -> tuple[str, bool]:
    """The text blocks of an Anthropic message, and whether it was cut off."""
    if response.get("content") is None:
        raise RecordError(f"{where}.content: no assistant output")
    text = _content_text(
        response.get("content"), f"{where}.content", joiner="", allow_reasoning=True
    )
    return text, response.get("stop_reason") == "max_tokens"


# Responses API statuses of a response without a finished answer.
_UNFINISHED: Final = frozenset({"failed", "cancelled", "in_progress", "queued"})


def _responses_answer(response: Mapping[str, Any], where: str) -> tuple[str, bool]:
    """The text of a Responses API response's ``message`` items; ``incomplete`` is cut off."""
    status = response.get("status")
    if status in _UNFINISHED:
        raise RecordError(f"{_at(where, 'status')}: {status!r} (no finished assistant output)")
    at_output = _at(where, "output")
    output = response.get("output")
    if not isinstance(output, list) or not output:
        got = "an empty list" if isinstance(output, list) else _kind(output)
        raise RecordError(
            f"{at_output}: expected a list of output items, got {got} (no assistant output)"
        )
    texts: list[str] = []
    for i, item in enumerate(output):
        at = f"{at_output}[{i}]"
        if not isinstance(item, dict):
            raise RecordError(f"{at}: expected an output item, got {_kind(item)}")
        kind = item.get("type")
        if kind == "message":
            texts.append(
                _content_text(item.get("content"), f"{at}.content", joiner="", allow_reasoning=True)
            )
        elif kind not in _SKIPPED_ITEMS:
            raise RecordError(
                f"{at}: {kind!r} output (a tool call or non-text output); only text answers "
                "can be imported"
            )
    if not texts:
        raise RecordError(f"{at_output}: no message item (no assistant output)")
    return "\n\n".join(texts), status == "incomplete"


def detect_format(data: Mapping[str, Any]) -> str | None:
    """The shape of a log object (one of :data:`FORMATS` but ``auto``), or None if unknown."""
    if "call_type" in data or (
        "response" in data
        and "request" not in data
        and ("messages" in data or "proxy_server_request" in data)
    ):
        return "litellm"
    if "request" in data or "response" in data:
        response = data.get("response")
        request = data.get("request")
        shape = _response_shape(response) if isinstance(response, dict) else None
        if shape is not None:
            return shape
        if isinstance(request, dict):
            if "system" in request:
                return "anthropic"
            if "input" in request and "messages" not in request:
                return "responses"
        return "openai"
    if "messages" in data:
        return "openai"
    if "input" in data or "output" in data:
        if (
            isinstance(data.get("output"), list)
            or isinstance(data.get("input"), list)
            or "instructions" in data
            or data.get("object") == "response"
        ):
            return "responses"
        return "plain"
    return None


def _string_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _parse_request_response(data: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    request = data.get("request")
    response = data.get("response")
    if not isinstance(request, dict):
        raise RecordError(f"request: expected an object, got {_kind(request)}")
    if response is None:
        raise RecordError("no response: nothing for the reference (no assistant output)")
    if not isinstance(response, dict):
        raise RecordError(f"response: expected an object, got {_kind(response)}")
    if _is_error(response):
        raise RecordError("the response is an error (no assistant output)")
    systems, turns, where = _request_conversation(request, "request")
    if fmt == "responses":
        _check_self_contained(request, "request")
        _check_self_contained(response, "response")
        # The response repeats the instructions; a log may keep them only there.
        _add_system(systems, _instructions(response.get("instructions"), "response.instructions"))
        reference, truncated = _responses_answer(response, "response")
    elif fmt == "anthropic":
        reference, truncated = _anthropic_answer(response, "response")
    else:
        reference, truncated = _chat_answer(response, "response")
    _check_ends_with_user(turns, where)
    model = (
        _string_or_none(response.get("model"))
        or _string_or_none(request.get("model"))
        or _string_or_none(data.get("model"))
    )
    return {
        "systems": systems,
        "turns": turns,
        "reference": reference,
        "model": model,
        "truncated": truncated,
        "consumed": {"request", "response", "model"},
    }


def _parse_flat(data: Mapping[str, Any]) -> dict[str, Any]:
    systems, turns = _conversation(data.get("messages"), "messages")
    if not turns or turns[-1][0] != "assistant":
        raise RecordError(
            "messages: the last message must be the assistant's answer (no assistant output)"
        )
    reference = turns.pop()[1]
    _check_ends_with_user(turns, "messages")
    _add_system(systems, _system_text(data.get("system"), "system"))
    return {
        "systems": systems,
        "turns": turns,
        "reference": reference,
        "model": _string_or_none(data.get("model")),
        "truncated": False,
        "consumed": {"messages", "system", "model"},
    }


# Fields of a Responses API response object: a flat Responses record is one with its `input`.
# They describe the call, not the traffic, and are not copied into metadata.
_RESPONSE_FIELDS: Final = frozenset(
    {
        "id",
        "object",
        "created_at",
        "completed_at",
        "status",
        "error",
        "incomplete_details",
        "instructions",
        "input",
        "output",
        "output_text",
        "model",
        "usage",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "top_logprobs",
        "max_output_tokens",
        "max_tool_calls",
        "previous_response_id",
        "conversation",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning",
        "text",
        "truncation",
        "store",
        "background",
        "service_tier",
        "safety_identifier",
        "user",
    }
)


def _parse_responses_flat(data: Mapping[str, Any]) -> dict[str, Any]:
    if _is_error(data):
        raise RecordError("the response is an error (no assistant output)")
    _check_self_contained(data, "")
    systems, turns = _responses_input(data.get("input"), "input")
    _add_system(systems, _instructions(data.get("instructions"), "instructions"))
    output = data.get("output")
    if isinstance(output, str):
        if not output.strip():
            raise RecordError("output: empty (no assistant output)")
        reference, truncated = output, False
    else:
        reference, truncated = _responses_answer(data, "")
    _check_ends_with_user(turns, "input")
    return {
        "systems": systems,
        "turns": turns,
        "reference": reference,
        "model": _string_or_none(data.get("model")),
        "truncated": truncated,
        "consumed": _RESPONSE_FIELDS,
    }


# Top-level fields of LiteLLM's StandardLoggingPayload and of its spend-log rows
# (LiteLLM_SpendLogs). Only _LITELLM_KEPT of them are copied into metadata: the rest are
# costs, token counts, deployment details, key hashes and IP addresses.
_LITELLM_FIELDS: Final = frozenset(
    {
        "id",
        "trace_id",
        "call_id",
        "call_type",
        "stream",
        "response_cost",
        "cost_breakdown",
        "response_cost_failure_debug_info",
        "status",
        "status_fields",
        "custom_llm_provider",
        "total_tokens",
        "prompt_tokens",
        "completion_tokens",
        "startTime",
        "endTime",
        "completionStartTime",
        "response_time",
        "model_map_information",
        "model",
        "model_id",
        "model_group",
        "api_base",
        "metadata",
        "cache_hit",
        "cache_key",
        "saved_cache_cost",
        "request_tags",
        "end_user",
        "requester_ip_address",
        "user_agent",
        "messages",
        "response",
        "error_str",
        "error_information",
        "model_parameters",
        "hidden_params",
        "guardrail_information",
        "standard_built_in_tools_params",
        # spend logs
        "request_id",
        "api_key",
        "spend",
        "user",
        "team_id",
        "session_id",
        "proxy_server_request",
        "mcp_namespaced_tool_name",
        # a gateway log's own request body
        "request",
    }
)
_LITELLM_KEPT: Final = frozenset(
    {
        "id",
        "call_id",
        "trace_id",
        "request_id",
        "session_id",
        "call_type",
        "custom_llm_provider",
        "model_group",
        "request_tags",
        "cache_hit",
        "startTime",
        "endTime",
        "end_user",
        "user",
        "team_id",
    }
)
# In LiteLLM's metadata: the key's team, and what the caller attached to the request.
_LITELLM_METADATA_KEPT: Final = ("user_api_key_team_alias",)
_LITELLM_METADATA_MERGED: Final = ("requester_metadata", "spend_logs_metadata")

_LITELLM_REDACTED: Final = "redacted-by-litellm"
_NOT_STORED: Final = "spend logs hold it only with store_prompts_in_spend_logs: true"


def _json_text(value: object) -> object:
    """A value that spend-log rows store as JSON text, decoded; anything else as it is."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{", '"'):
        try:
            return json.loads(value, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return value  # text that only looks like JSON
    return value


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, str | list | dict) and not value)


def _litellm_request(data: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str]:
    """The logged request body and its path: ``request``, else ``proxy_server_request``."""
    for key in ("request", "proxy_server_request"):
        value = _json_text(data.get(key))
        if isinstance(value, dict) and "messages" not in value and "input" not in value:
            body = value.get("body")  # a whole HTTP request: url, method, headers, body
            value, key = (body, f"{key}.body") if isinstance(body, dict) else (None, key)
        if isinstance(value, dict) and ("messages" in value or "input" in value):
            return value, key
    return None, ""


def _parse_litellm(data: Mapping[str, Any]) -> dict[str, Any]:
    if data.get("status") == "failure":
        raise RecordError("status 'failure': the call failed (no assistant output)")
    request, request_at = _litellm_request(data)
    messages = _json_text(data.get("messages"))
    where = "messages"
    systems: list[str]
    turns: list[tuple[str, str]]
    if isinstance(messages, str) and messages.strip():
        systems, turns = [], [("user", messages)]
    elif isinstance(messages, list) and messages:
        systems, turns = _conversation(messages, "messages")
    elif isinstance(messages, dict) and messages:
        systems, turns, where = _request_conversation(messages, "messages")
    elif request is not None:
        systems, turns, where = _request_conversation(request, request_at)
    else:
        raise RecordError(f"messages: not logged (no conversation); {_NOT_STORED}")
    params = data.get("model_parameters")
    for source, at in ((params, "model_parameters"), (request, request_at)):
        if isinstance(source, dict):
            _check_self_contained(source, at)
            _add_system(systems, _instructions(source.get("instructions"), f"{at}.instructions"))
            _add_system(systems, _system_text(source.get("system"), f"{at}.system"))
    response = _json_text(data.get("response"))
    if _empty(response):
        raise RecordError(f"response: not logged (no assistant output); {_NOT_STORED}")
    if not isinstance(response, dict):
        raise RecordError(f"response: expected a response object, got {_kind(response)}")
    if _is_error(response):
        raise RecordError("the response is an error (no assistant output)")
    shape = _response_shape(response)
    if shape == "openai":
        reference, truncated = _chat_answer(response, "response")
    elif shape == "anthropic":
        reference, truncated = _anthropic_answer(response, "response")
    elif shape == "responses":
        _check_self_contained(response, "response")
        _add_system(systems, _instructions(response.get("instructions"), "response.instructions"))
        reference, truncated = _responses_answer(response, "response")
    else:
        call_type = data.get("call_type")
        of = f" of call_type {call_type!r}" if isinstance(call_type, str) else ""
        keys = ", ".join(sorted(response)[:8])
        raise RecordError(
            f"response{of}: not a chat completion, Responses API or Anthropic messages "
            f"response (keys: {keys})"
        )
    if reference == _LITELLM_REDACTED or any(text == _LITELLM_REDACTED for _, text in turns):
        raise RecordError(
            "the messages were redacted by LiteLLM (turn_off_message_logging): nothing to import"
        )
    _check_ends_with_user(turns, where)
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key in _LITELLM_FIELDS and key not in _LITELLM_KEPT:
            continue
        value = _json_text(value) if key == "request_tags" else value
        if not _empty(value):
            fields[key] = value
    metadata = _json_text(data.get("metadata"))
    if isinstance(metadata, dict):
        for key in _LITELLM_METADATA_KEPT:
            if not _empty(metadata.get(key)):
                fields[key] = metadata[key]
        for key in _LITELLM_METADATA_MERGED:
            extra = metadata.get(key)
            if isinstance(extra, dict):
                fields.update(extra)
    return {
        "systems": systems,
        "turns": turns,
        "reference": reference,
        "model": _string_or_none(response.get("model")) or _string_or_none(data.get("model")),
        "truncated": truncated,
        "fields": fields,
    }


def _parse_plain(data: Mapping[str, Any]) -> dict[str, Any]:
    user = data.get("input")
    if not isinstance(user, str) or not user.strip():
        got = "nothing" if "input" not in data else _kind(user)
        raise RecordError(f"input: expected a non-empty string, got {got}")
    output = data.get("output")
    if output is None:
        raise RecordError("output: missing (no assistant output)")
    if not isinstance(output, str):
        raise RecordError(f"output: expected a string, got {_kind(output)}")
    if not output.strip():
        raise RecordError("output: empty (no assistant output)")
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        raise RecordError(f"system: expected a string, got {_kind(system)}")
    return {
        "systems": [system] if system and system.strip() else [],
        "turns": [("user", user)],
        "reference": output,
        "model": _string_or_none(data.get("model")),
        "truncated": False,
        "consumed": {"input", "output", "system", "model"},
    }


_FORMAT_NAMES: Final = {
    "openai": "an OpenAI chat",
    "anthropic": "an Anthropic messages",
    "responses": "an OpenAI Responses API",
    "litellm": "a LiteLLM gateway",
    "plain": "a plain {input, output}",
}
_REQUEST_RESPONSE_FORMATS: Final = frozenset({"openai", "anthropic", "responses"})


def _could_be(data: Mapping[str, Any], detected: str, fmt: str) -> bool:
    """Whether a record detected as ``detected`` may be read as the forced ``fmt``."""
    if detected == fmt:
        return True
    if "request" in data or "response" in data:
        # A response without choices, content or output does not tell its provider; the
        # parser then reports what is missing.
        response = data.get("response")
        decided = isinstance(response, dict) and _response_shape(response) is not None
        return (
            not decided
            and detected in _REQUEST_RESPONSE_FORMATS
            and fmt in _REQUEST_RESPONSE_FORMATS
        )
    # The flat {system, messages} style is common to OpenAI and Anthropic.
    return "messages" in data and {detected, fmt} == {"openai", "anthropic"}


def parse_record(data: object, fmt: Format = "auto", *, source: str = "") -> LogRecord:
    """The :class:`LogRecord` of one decoded log line; raises :class:`RecordError`."""
    if not isinstance(data, dict):
        raise RecordError(f"expected a JSON object, got {_kind(data)}")
    detected = detect_format(data)
    if detected is None:
        keys = ", ".join(sorted(data)[:8]) or "none"
        raise RecordError(
            "unknown record shape: expected 'request' and 'response', 'messages', "
            "'input' and 'output', or a LiteLLM log with 'call_type' "
            f"(keys: {keys})"
        )
    if fmt != "auto":
        if not _could_be(data, detected, fmt):
            raise RecordError(
                f"not {_FORMAT_NAMES[fmt]} record (it looks like {_FORMAT_NAMES[detected]} "
                "record; try --format auto)"
            )
        detected = fmt
    if detected == "litellm":
        parsed = _parse_litellm(data)
    elif "request" in data or "response" in data:
        parsed = _parse_request_response(data, detected)
    elif detected == "plain":
        parsed = _parse_plain(data)
    elif detected == "responses":
        parsed = _parse_responses_flat(data)
    else:
        parsed = _parse_flat(data)
    fields: dict[str, Any]
    if "fields" in parsed:
        fields = parsed["fields"]
    else:
        fields = {}
        for key, value in data.items():
            if key in parsed["consumed"] or key == "metadata":
                continue
            fields[key] = value
        metadata = data.get("metadata")
        if isinstance(metadata, dict):
            fields.update(metadata)
        elif metadata is not None:
            fields["metadata"] = metadata
    systems: list[str] = parsed["systems"]
    return LogRecord(
        source=source,
        system="\n\n".join(systems) if systems else None,
        messages=tuple(parsed["turns"]),
        reference=parsed["reference"],
        model=parsed["model"],
        fields=fields,
        truncated=parsed["truncated"],
        format=detected,
    )


def _reject_constant(name: str) -> Any:
    raise RecordError(f"invalid JSON: {name} is not a JSON value")


def _parse_line(raw: bytes, number: int, fmt: Format, label: str) -> LogRecord | str | None:
    """A record, a reason to skip the line, or None for a blank line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
    if number == 1:
        text = text.removeprefix("\ufeff")
    if not text.strip():
        return None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return f"invalid JSON at column {exc.colno}: {exc.msg}"
    except RecordError as exc:
        return str(exc)
    except RecursionError:
        return "invalid JSON: nested too deeply"
    try:
        return parse_record(data, fmt, source=f"{label}:{number}")
    except RecordError as exc:
        return str(exc)


def _open_log(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    if path.endswith(".gz"):
        return cast(BinaryIO, gzip.open(path, "rb"))
    return open(path, "rb")


def read_logs(paths: Sequence[str], fmt: Format = "auto") -> ReadResult:
    """Read JSONL logs (``-`` is stdin, ``*.gz`` is decompressed), skipping bad lines.

    Raises :class:`OSError` (or :class:`EOFError` for a truncated gzip file) when a file
    cannot be read at all.
    """
    result = ReadResult()
    for path in paths:
        label = "<stdin>" if path == "-" else path
        digest = hashlib.sha256()
        lines = records = malformed = 0
        handle = _open_log(path)
        try:
            for number, raw in enumerate(handle, start=1):
                digest.update(raw)
                lines += 1
                outcome = _parse_line(raw.rstrip(b"\r\n"), number, fmt, label)
                if isinstance(outcome, LogRecord):
                    result.records.append(outcome)
                    records += 1
                elif outcome is not None:
                    result.malformed.append(Malformed(label, number, outcome))
                    malformed += 1
        finally:
            if path != "-":
                handle.close()
        result.lines += lines
        result.files += 1
        result.sources.append(SourceStats(label, digest.hexdigest(), lines, records, malformed))
    return result


# --------------------------------------------------------------------------------------------
# Redaction (the rules are in redaction.py)
# --------------------------------------------------------------------------------------------


def redact_record(record: LogRecord, redactor: Redactor | None = None) -> LogRecord:
    """The record with system, messages, reference and fields redacted, and the counts.

    ``fields`` are redacted keys and values alike (see :func:`redaction.redact_data`).
    ``redactor`` defaults to the built-in rules.
    """
    redactor = redactor or default_redactor()
    counts: Counter[str] = Counter()

    def text(value: str) -> str:
        redacted, found = redactor(value)
        counts.update(found)
        return redacted

    system = None if record.system is None else text(record.system)
    messages = tuple((role, text(content)) for role, content in record.messages)
    reference = text(record.reference)
    fields, found = redact_data(dict(record.fields), redactor)
    counts.update(found)
    return replace(
        record,
        system=system,
        messages=messages,
        reference=reference,
        fields=fields,
        redactions=dict(counts),
    )


# --------------------------------------------------------------------------------------------
# Duplicates, ids, strata, sampling
# --------------------------------------------------------------------------------------------


def _normalize(text: str | None) -> str:
    return " ".join(unicodedata.normalize("NFC", text or "").split())


def conversation_key(system: str | None, messages: Iterable[tuple[str, str]]) -> str:
    """A canonical string of a conversation: whitespace runs collapsed, Unicode NFC."""
    return json.dumps(
        {
            "system": _normalize(system),
            "messages": [[role, _normalize(content)] for role, content in messages],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def case_id(prefix: str, system: str | None, messages: Iterable[tuple[str, str]]) -> str:
    """``<prefix>-<first 10 hex of sha256 of the normalized conversation>``."""
    digest = hashlib.sha256(conversation_key(system, messages).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:ID_HASH_LENGTH]}"


def dedupe(records: Iterable[LogRecord]) -> tuple[list[LogRecord], int]:
    """The first record of each conversation (system + messages), and how many were removed."""
    seen: set[str] = set()
    kept: list[LogRecord] = []
    removed = 0
    for record in records:
        key = conversation_key(record.system, record.messages)
        if key in seen:
            removed += 1
            continue
        seen.add(key)
        kept.append(record)
    return kept, removed


def length_band(text: str) -> str:
    """``short`` (< 200 characters), ``medium`` (< 1000) or ``long``."""
    if len(text) < SHORT_LIMIT:
        return "short"
    if len(text) < MEDIUM_LIMIT:
        return "medium"
    return "long"


def _label(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def stratum_of(record: LogRecord, by: str) -> str:
    """The stratum of a record for ``--stratify-by``.

    ``length`` is the length band of the last user message; ``model`` the logged model;
    ``metadata.KEY`` (or just ``KEY``, dots for nested keys) a field of the log record or of
    its ``metadata`` object. ``tag`` falls back to ``tags``, then to LiteLLM's
    ``request_tags`` (a list becomes comma-joined). A missing or null field is the stratum
    ``(none)``.
    """
    if by == "length":
        return length_band(record.user)
    if by == "model":
        return record.model or MISSING
    parts = by.removeprefix("metadata.").split(".")
    value: Any = dict(record.fields)
    if parts == ["tag"] and "tag" not in value:
        for name in ("tags", "request_tags"):
            if name in value:
                tags = value[name]
                if isinstance(tags, list) and tags:
                    return ",".join(map(str, tags))
                return _label(tags)
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return _label(value)


def allocate(counts: Mapping[str, int], size: int) -> dict[str, int]:
    """Proportional allocation of ``size`` over strata by largest remainder.

    Each stratum gets ``floor(size * n / total)``; the seats left go to the largest
    remainders (ties: the larger stratum, then the name). Everything when ``size >= total``.
    """
    total = sum(counts.values())
    if size >= total:
        return dict(counts)
    shares = {name: size * n // total for name, n in counts.items()}
    left = size - sum(shares.values())
    order = sorted(counts, key=lambda name: (-(size * counts[name] % total), -counts[name], name))
    for name in order[:left]:
        shares[name] += 1
    return shares


def stratified_sample(
    items: Sequence[_T], size: int, stratum: Callable[[_T], str], seed: int = 0
) -> tuple[list[_T], dict[str, tuple[int, int]]]:
    """A seeded proportional sample and, per stratum, ``(selected, available)``.

    Strata are visited in sorted order with one ``random.Random(seed)``, so the same items,
    size and seed always give the same sample. The sample keeps the items' order.
    """
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(stratum(item), []).append(index)
    shares = allocate({name: len(members) for name, members in groups.items()}, size)
    rng = random.Random(seed)
    chosen: list[int] = []
    for name in sorted(groups):
        members = groups[name]
        chosen.extend(
            members if shares[name] >= len(members) else rng.sample(members, shares[name])
        )
    report = {name: (shares[name], len(groups[name])) for name in groups}
    return [items[i] for i in sorted(chosen)], report


# --------------------------------------------------------------------------------------------
# Cases and the golden file
# --------------------------------------------------------------------------------------------


def _is_user_id_key(key: str) -> bool:
    return re.sub(r"[^a-z0-9]", "", key.lower()) in _USER_ID_KEYS


def _drop_user_ids(fields: Mapping[str, Any], dropped: Counter[str]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in fields.items():
        if _is_user_id_key(key):
            dropped[key] += 1
            continue
        kept[key] = _drop_user_ids(value, dropped) if isinstance(value, dict) else value
    return kept


def to_case(
    record: LogRecord,
    *,
    prefix: str,
    tags: Sequence[str] = (),
    keep_user_ids: bool = False,
    dropped: Counter[str] | None = None,
) -> dict[str, Any]:
    """The golden case of a record, keys in the order id, system, user/messages, reference,
    tags, metadata; ``dropped`` counts the user-id fields left out, by name."""
    fields = dict(record.fields)
    if not keep_user_ids:
        fields = _drop_user_ids(fields, Counter() if dropped is None else dropped)
    metadata: dict[str, Any] = {"source": record.source}
    if record.model:
        metadata["model"] = record.model
    if record.truncated:
        metadata["truncated"] = True
    for key in sorted(fields):
        metadata.setdefault(key, fields[key])
    case: dict[str, Any] = {"id": case_id(prefix, record.system, record.messages)}
    if record.system is not None:
        case["system"] = record.system
    if len(record.messages) == 1:
        case["user"] = record.messages[0][1]
    else:
        case["messages"] = [{"role": role, "content": text} for role, text in record.messages]
    case["reference"] = record.reference
    if tags:
        case["tags"] = list(dict.fromkeys(tags))
    case["metadata"] = metadata
    return case


def render_jsonl(cases: Iterable[Mapping[str, Any]]) -> str:
    """The text of a JSONL golden file: one case object per line and nothing else.

    No comment or header lines: every line is a JSON object, so any JSON Lines reader
    accepts the file. What the import did goes into the provenance file
    (:func:`provenance_path`).
    """
    return "".join(json.dumps(case, ensure_ascii=False) + "\n" for case in cases)


def provenance_path(output: Path) -> Path:
    """The provenance file of a golden file: ``NAME.jsonl`` -> ``NAME.import.json``."""
    return output.with_suffix(PROVENANCE_SUFFIX)


def write_atomic(path: Path, text: str, *, force: bool = False) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``.

    Raises :class:`FileExistsError` when ``path`` exists and ``force`` is false. Parent
    directories are created. The new file gets the usual permissions (0666 minus the umask).
    """
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text, keep_mode=False)


def detectable_drop(n: int) -> float:
    """The smallest pass-rate drop, in points, that ``n`` paired cases detect.

    The normal approximation of McNemar's test at a two-sided 5% level with 80% power, when
    about :data:`ASSUMED_DISCORDANCE` of the cases change verdict between the two models:
    ``(1.96 + 0.84) * sqrt(0.10 / n)``; never below the 6 one-way flips the exact test needs
    to call anything significant. ``math.inf`` when even a drop from 100% to 0% is not seen.
    """
    if n <= 0:
        return math.inf
    drop = max((_Z_ALPHA + _Z_POWER) * math.sqrt(ASSUMED_DISCORDANCE / n), _MIN_FLIPS / n)
    return math.inf if drop > 1.0 else 100.0 * drop


# --------------------------------------------------------------------------------------------
# The whole import
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    """Everything ``llmregress import`` takes on its command line."""

    logs: tuple[str, ...]
    output: Path
    format: Format = "auto"
    size: int = DEFAULT_SIZE
    stratify_by: str | None = None
    seed: int = 0
    id_prefix: str | None = None
    tags: tuple[str, ...] = ()
    redact: bool = True
    redactors: tuple[str, ...] = ()
    keep_user_ids: bool = False
    force: bool = False


@dataclass
class ImportResult:
    """What an import did; :func:`import_logs` fills it, ``main`` reports it."""

    read: ReadResult
    duplicates: int = 0
    unique: int = 0
    strata: dict[str, tuple[int, int]] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    redactions: Counter[str] = field(default_factory=Counter)
    dropped_fields: Counter[str] = field(default_factory=Counter)
    prefix: str = ""
    formats: Counter[str] = field(default_factory=Counter)
    text: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def provenance_text(self) -> str:
        """The provenance file's text: the :attr:`provenance` document as indented JSON."""
        return json.dumps(self.provenance, ensure_ascii=False, indent=2) + "\n"


def default_prefix(output: Path) -> str:
    """The id prefix from the output file's stem, made a valid case id."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", output.name.removesuffix(".jsonl"))
    stem = re.sub(r"^[^A-Za-z0-9]+", "", stem)[:100]
    return stem or "case"


def _check_tags(tags: Sequence[str]) -> None:
    """Reuse the golden-file loader's tag rules so an invalid ``--tag`` fails up front."""
    probe = json.dumps({"id": "probe", "user": "probe", "tags": list(tags)})
    try:
        parse_jsonl(probe, "--tag")
    except CaseFileError as exc:
        raise UsageError(
            "; ".join(problem.message for problem in exc.problems).replace("tag ", "--tag ", 1)
        ) from None


def check_options(options: ImportOptions) -> str:
    """Validate options that need no log reading; returns the id prefix."""
    if options.output.suffix.lower() != ".jsonl":
        raise UsageError(f"the output must be a .jsonl file, got {str(options.output)!r}")
    if options.output.is_dir():
        raise UsageError(f"the output {str(options.output)!r} is a directory")
    if options.output.exists() and not options.force:
        raise UsageError(f"{options.output} exists; pass --force to overwrite it")
    sidecar = provenance_path(options.output)
    if sidecar.is_dir():
        raise UsageError(f"the provenance file {str(sidecar)!r} is a directory")
    if sidecar.exists() and not options.force:
        raise UsageError(f"{sidecar} exists; pass --force to overwrite it")
    if options.size < 1:
        raise UsageError(f"--size must be at least 1, got {options.size}")
    by = options.stratify_by
    if by is not None and (not by.strip() or by.endswith(".") or by == "metadata"):
        raise UsageError(
            f"--stratify-by: expected endpoint, tag, length, model or metadata.KEY, got {by!r}"
        )
    prefix = options.id_prefix if options.id_prefix is not None else default_prefix(options.output)
    if not _CASE_ID_RE.fullmatch(prefix) or len(prefix) > 150:
        raise UsageError(
            f"--id-prefix {prefix!r}: it must start with a letter or digit, contain only "
            "letters, digits, '.', '_' and '-', and be at most 150 characters"
        )
    _check_tags(options.tags)
    for log in options.logs:
        if log == "-":
            continue
        if not os.path.exists(log):
            raise UsageError(f"{log}: no such file")
        if os.path.isdir(log):
            raise UsageError(f"{log}: is a directory; pass the log files")
        for written, what in ((options.output, "the output"), (sidecar, "the provenance file")):
            if written.exists() and os.path.samefile(log, written):
                raise UsageError(f"{log} is both an input and {what}")
    if options.logs.count("-") > 1:
        raise UsageError("'-' (stdin) can be given only once")
    if options.redactors and not options.redact:
        raise UsageError("--redactor and --no-redact cannot be combined")
    return prefix


def build_redactor(options: ImportOptions) -> Redactor:
    """The built-in rules followed by the ``--redactor`` functions, loaded now.

    Raises :class:`UsageError` naming the spec when one cannot be loaded.
    """
    try:
        functions = [load_redactor(spec) for spec in options.redactors]
    except RedactorSpecError as exc:
        raise UsageError(str(exc)) from None
    return default_redactor().with_functions(functions)


def _written_redactions(case: Mapping[str, Any], unredacted: Mapping[str, Any]) -> Counter[str]:
    """Placeholders in the written case that its unredacted form did not hold, by kind."""
    text = json.dumps(case, ensure_ascii=False)
    return count_placeholders(text) - count_placeholders(json.dumps(unredacted, ensure_ascii=False))


def import_logs(options: ImportOptions, *, now: datetime | None = None) -> ImportResult:
    """Read, redact, deduplicate, sample and render the golden file and its provenance.

    Nothing is written. ``now`` is the import time recorded in the provenance (default: the
    current UTC time). Raises :class:`UsageError` for bad options (a ``--redactor`` that
    cannot be loaded included), :class:`OSError` for unreadable logs and
    :class:`~pytest_llmregress.authoring.redaction.RedactorError` when a ``--redactor``
    function fails.
    ``result.redactions`` counts the placeholders in the cases written.
    """
    prefix = check_options(options)
    redactor = build_redactor(options) if options.redact else None
    read = read_logs(options.logs, options.format)
    records = read.records
    originals: dict[int, LogRecord] = {}
    if redactor is not None:
        records = []
        for record in read.records:
            try:
                redacted = redact_record(record, redactor)
            except RedactorError as exc:
                raise RedactorError(f"{exc} (on {record.source})") from exc
            originals[id(redacted)] = record
            records.append(redacted)
    unique, duplicates = dedupe(records)
    by = options.stratify_by
    selected, strata = stratified_sample(
        unique,
        options.size,
        (lambda record: stratum_of(record, by)) if by else (lambda record: "all"),
        options.seed,
    )
    result = ImportResult(read, duplicates=duplicates, unique=len(unique), prefix=prefix)
    result.strata = strata if by else {}
    cases: list[dict[str, Any]] = []
    for record in selected:
        case = to_case(
            record,
            prefix=prefix,
            tags=options.tags,
            keep_user_ids=options.keep_user_ids,
            dropped=result.dropped_fields,
        )
        cases.append(case)
        if redactor is not None:
            # Counted in what is written: not in duplicates or records left out by sampling,
            # nor in user-id fields dropped from the metadata.
            unredacted = to_case(
                originals[id(record)],
                prefix=prefix,
                tags=options.tags,
                keep_user_ids=options.keep_user_ids,
            )
            result.redactions.update(_written_redactions(case, unredacted))
        result.formats[record.format] += 1
    cases.sort(key=lambda case: str(case["id"]))
    result.cases = cases
    if cases:
        result.text = render_jsonl(cases)
        result.provenance = provenance(options, result, now or datetime.now(UTC))
    return result


def command_line(options: ImportOptions) -> str:
    """The ``llmregress import`` command that gives the same cases from the same logs."""
    args = ["llmregress", "import", *options.logs, "-o", str(options.output)]
    if options.format != "auto":
        args += ["--format", options.format]
    args += ["--size", str(options.size)]
    if options.stratify_by:
        args += ["--stratify-by", options.stratify_by]
    args += ["--seed", str(options.seed)]
    if options.id_prefix is not None:
        args += ["--id-prefix", options.id_prefix]
    for tag in options.tags:
        args += ["--tag", tag]
    if not options.redact:
        args.append("--no-redact")
    for spec in options.redactors:
        args += ["--redactor", spec]
    if options.keep_user_ids:
        args.append("--keep-user-ids")
    return shlex.join(args)


def redaction_kinds(counts: Mapping[str, int]) -> list[str]:
    """The built-in kinds in reporting order, then the kinds only a team's function wrote."""
    return [*REDACTION_KINDS, *sorted(set(counts) - set(REDACTION_KINDS))]


def provenance(options: ImportOptions, result: ImportResult, now: datetime) -> dict[str, Any]:
    """The provenance document of an import: how the golden file was made, from what.

    Run-level facts only; each case's own origin (log file and line, model, the log's
    fields) is in its ``metadata``. See ``docs/importing-traffic.md`` for every field.
    """
    read = result.read
    return {
        "version": PROVENANCE_VERSION,
        "golden_file": options.output.name,
        "imported_at": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "pytest-llmregress", "version": __version__},
        "command": command_line(options),
        "options": {
            "format": options.format,
            "size": options.size,
            "stratify_by": options.stratify_by,
            "seed": options.seed,
            "id_prefix": result.prefix,
            "tags": list(dict.fromkeys(options.tags)),
            "redact": options.redact,
            "redactors": list(options.redactors),
            "keep_user_ids": options.keep_user_ids,
        },
        "sources": [
            {
                "path": source.path,
                "sha256": source.sha256,
                "lines": source.lines,
                "records": source.records,
                "malformed": source.malformed,
            }
            for source in read.sources
        ],
        "counts": {
            "records": len(read.records),
            "malformed": len(read.malformed),
            "duplicates": result.duplicates,
            "unique": result.unique,
            "cases": len(result.cases),
        },
        "log_formats": dict(sorted(result.formats.items())),
        "strata": (
            {
                name: {"selected": chosen, "available": available}
                for name, (chosen, available) in sorted(result.strata.items())
            }
            if options.stratify_by
            else None
        ),
        "redactions": (
            {kind: result.redactions[kind] for kind in redaction_kinds(result.redactions)}
            if options.redact
            else None
        ),
        "dropped_user_id_fields": dict(sorted(result.dropped_fields.items())),
    }


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
