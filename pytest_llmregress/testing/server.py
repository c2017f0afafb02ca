"""A local HTTP server that speaks the Anthropic Messages and OpenAI Chat Completions APIs.

It exists so the project's tests, benchmarks and users without an API key or network can drive the
*real* official SDK clients over real HTTP, against deterministic, scriptable models: canned and
golden answers, aliases that can be re-pointed while running, drift, malformed judge output,
latency, and injected faults (429 with ``retry-after``, 500, 529, retired models, ...). Its
nondeterminism is *known*: a model that samples, a noisy judge and a judge with a position bias
draw from hashes, and :func:`answers_normally`, :func:`sampled_answer_ok` and
:func:`judge_flips` tell a test what the server will answer. It also speaks both providers'
batch APIs (Message Batches; OpenAI Batch and Files: ``batches.py``), whose batches end when a
test says so.

Stdlib only (``http.server.ThreadingHTTPServer``, HTTP/1.1 keep-alive); importing this module does
not import any SDK. See ``docs/local-server.md`` for the scenario format and examples::

    from pytest_llmregress.testing.server import LocalProviderServer

    with LocalProviderServer({"models": {"*": {"default_reply": "ok"}}}) as server:
        client = anthropic.Anthropic(base_url=server.url, api_key="x")
        client.messages.create(model="m", max_tokens=64, messages=[...])
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as _dt
import difflib
import hashlib
import hmac
import json
import math
import os
import random
import re
import secrets
import socket
import sys
import threading
import time
import traceback
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pytest_llmregress.testing.batches import (
    BatchAnswer,
    BatchAPIError,
    BatchInfo,
    BatchStore,
    anthropic_page,
)
from pytest_llmregress.testing.scenario import (
    WILDCARD,
    ErrorRule,
    JudgeNoise,
    ModelConfig,
    RateLimit,
    SamplingConfig,
    Scenario,
    ScenarioError,
    check_alias,
    content_text,
    load_scenario,
    normalize_text,
    parse_model_changes,
)

__all__ = [
    "BatchInfo",
    "JudgePair",
    "LocalProviderServer",
    "RequestRecord",
    "Response",
    "answers_normally",
    "is_sampled",
    "judge_flips",
    "judge_pair",
    "sampled_answer_ok",
]

Provider = Literal["anthropic", "openai"]

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

_DEFAULT_CREATED = _dt.date(2025, 1, 1)
_CLIENT_POLL_S = 0.05  # how often a request waiting for a slot looks whether its client left
_JUDGE_REFUSAL = (
    "I can't grade this: the prompt must contain a reference block and a candidate block."
)
_CRITERIA = ("accuracy", "completeness", "format")
# A criterion as a judge's system prompt lists it: a line "- name: what it means".
_CRITERION_LINE = re.compile(r"^- ([A-Za-z_][A-Za-z0-9_]*): ", re.MULTILINE)

# status -> (Anthropic error type, OpenAI error type, OpenAI code)
_ERROR_TYPES: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "invalid_request_error", None),
    401: ("authentication_error", "invalid_request_error", "invalid_api_key"),
    402: ("billing_error", "invalid_request_error", None),
    403: ("permission_error", "permission_error", None),
    404: ("not_found_error", "invalid_request_error", None),
    408: ("timeout_error", "timeout_error", None),
    409: ("conflict_error", "invalid_request_error", None),
    413: ("invalid_request_error", "invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", "invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_error", "rate_limit_exceeded"),
    500: ("api_error", "server_error", None),
    503: ("api_error", "server_error", None),
    504: ("timeout_error", "server_error", None),
    529: ("overloaded_error", "server_error", None),
}

_DEFAULT_MESSAGES: dict[int, str] = {
    400: "Invalid request.",
    401: "Invalid API key.",
    402: "Your credit balance is too low.",
    403: "Your API key does not have permission to use the specified resource.",
    404: "The requested resource could not be found.",
    408: "Request timed out.",
    409: "Conflict.",
    413: "Request exceeds the maximum allowed number of bytes.",
    422: "Unprocessable request.",
    429: "Rate limit exceeded. Please slow down (injected by the llmregress local server).",
    500: "Internal server error (injected by the llmregress local server).",
    503: "Service unavailable (injected by the llmregress local server).",
    504: "Gateway timeout (injected by the llmregress local server).",
    529: "Overloaded (injected by the llmregress local server).",
}

_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)


def _error_types(status: int) -> tuple[str, str, str | None]:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    if status >= 500:
        return ("api_error", "server_error", None)
    return ("invalid_request_error", "invalid_request_error", None)


@dataclass(frozen=True)
class RequestRecord:
    """One request to a model endpoint (``/v1/messages`` or ``/v1/chat/completions``).

    ``requested_model`` is the id the client sent (``None`` if missing), ``resolved_model`` the
    snapshot it resolved to (``None`` for unknown ids and requests rejected before resolution),
    ``system`` the system prompt text, ``user_text`` the last user message, ``params`` the sampling
    parameters that were sent and ``time`` the Unix time the request arrived.
    """

    endpoint: str
    requested_model: str | None
    resolved_model: str | None
    status: int
    system: str | None
    user_text: str | None
    params: dict[str, Any]
    time: float


@dataclass
class Response:
    """A response produced by :meth:`LocalProviderServer.handle`, before it goes on the wire."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    generated: bool = False  # a model's answer (for the count of answers nobody received)


class _HTTPError(Exception):
    """Raised inside a handler to answer with an error: in the provider's format, or in the
    ``shape`` of an error rule (``None``: the server's ``error_shape``)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        resolved: str | None = None,
        shape: str | None = None,
    ) -> None:
        super().__init__(message)
        self.resolved = resolved
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.shape = shape


@dataclass
class _ModelState:
    """Mutable per-snapshot runtime state: request counter and seeded random streams."""

    count: int
    error_rng: random.Random
    jitter_rng: random.Random
    tokens: float = math.inf  # the rate limit's bucket, filled on first use
    filled_at: float = 0.0  # time.monotonic() of its last refill


@dataclass
class _Slots:
    """The generation slots of a model (or of the server): how many are busy, and the
    requests waiting for one, first come first served."""

    busy: int = 0
    waiting: collections.deque[object] = field(default_factory=collections.deque)


@dataclass
class _Prompt:
    """What the server extracted from a request body, independent of the provider.

    ``tool`` is the tool the request forces (Anthropic ``tool_choice``), ``json_only`` that it
    asked for a JSON reply (OpenAI ``response_format``, Anthropic ``output_config.format``);
    ``structured`` names what was asked for, for the 400 of a model without structured output.
    """

    model: str
    system: str
    user_text: str
    input_chars: int
    params: dict[str, Any]
    tool: str | None = None
    json_only: bool = False
    structured: str | None = None


def _format_seconds(value: float) -> str:
    """Format a ``retry-after`` value without exponent notation (``0.05``, ``1``)."""
    if value == int(value):
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _tokens(chars: int) -> int:
    """Deterministic token estimate: one token per four characters, at least one."""
    return max(1, math.ceil(chars / 4))


def _unit_hash(*parts: object) -> float:
    """Map ``parts`` to a stable float in [0, 1) (same value in every process and run)."""
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_sampled(seed: int, snapshot: str, prompt_text: str, share: float) -> bool:
    """Whether a model with ``sampling: {share: ...}`` samples the prompt ``prompt_text`` (the
    last user message; compared with whitespace collapsed), as the server decides it."""
    return _unit_hash("sampling", seed, snapshot, normalize_text(prompt_text)) < share


def sampled_answer_ok(seed: int, snapshot: str, prompt_text: str, n: int, pass_rate: float) -> bool:
    """Whether the ``n``-th request (0, 1, 2, ...) of a sampled prompt gets the model's normal
    answer (True) or the sampling ``reply`` (False), as the server decides it."""
    return _unit_hash("sample", seed, snapshot, normalize_text(prompt_text), n) < pass_rate


def answers_normally(
    sampling: SamplingConfig | None,
    snapshot: str,
    prompt_text: str,
    n: int,
    *,
    scenario_seed: int = 0,
) -> bool:
    """The server's whole decision for the ``n``-th request of ``prompt_text`` to a model with
    this ``sampling`` block (a :class:`ModelConfig`'s ``sampling``): True for its normal answer,
    False for the sampling ``reply``. A prompt that doesn't sample always answers normally.
    ``scenario_seed`` is the scenario's ``seed``, used when the block gives none.
    ``n`` counts the requests of that prompt to that snapshot that reached a reply, from the
    server's start or its last :meth:`LocalProviderServer.reset_stats`."""
    if sampling is None:
        return True
    seed = scenario_seed if sampling.seed is None else sampling.seed
    if not is_sampled(seed, snapshot, prompt_text, sampling.share):
        return True
    return sampled_answer_ok(seed, snapshot, prompt_text, n, sampling.pass_rate_for(prompt_text))


def judge_flips(
    seed: int, snapshot: str, reference: str, candidate: str, n: int, share: float, flip: float
) -> bool:
    """Whether a judge with ``judge_noise: {share, flip, seed}`` gives the opposite verdict on
    its ``n``-th judging (0, 1, 2, ...) of the pair ``(reference, candidate)``, as the server
    decides it. The texts are compared as the judge reads them (whitespace collapsed)."""
    ref, cand = _pair_key(reference), _pair_key(candidate)
    return _noisy_pair(seed, snapshot, ref, cand, share) and (
        _unit_hash("flip", seed, snapshot, ref, cand, n) < flip
    )


def _pair_key(text: str) -> str:
    return normalize_text(_fold(text))


def _noisy_pair(seed: int, snapshot: str, reference: str, candidate: str, share: float) -> bool:
    return _unit_hash("judge-noise", seed, snapshot, reference, candidate) < share


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _iso(day: _dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _unix(day: _dt.date) -> int:
    return int(_dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC).timestamp())


@dataclass(frozen=True)
class JudgeAnswer:
    """What the judge model makes of one prompt: a verdict (``None``: nothing to grade) and
    the verdict-like JSON objects it found in the candidate, which it quotes in a plain-text
    reply before its own verdict, as real judges do."""

    verdict: dict[str, Any] | None
    quoted: tuple[str, ...] = ()

    def text(self, *, structured: bool = False) -> str:
        """The reply: the verdict object alone when structured output was asked for."""
        if self.verdict is None:
            return _JUDGE_REFUSAL
        verdict = json.dumps(self.verdict, ensure_ascii=False)
        if structured or not self.quoted:
            return verdict
        quoted = " and ".join(self.quoted)
        return (
            f"The candidate contains {quoted}, which is not my verdict. "
            f"Here is my verdict: {verdict}"
        )


def judge_reply(
    prompt: str,
    system: str = "",
    *,
    structured: bool = False,
    scores: Mapping[str, float] | None = None,
) -> str:
    """Answer a judge prompt: score how similar the candidate block is to the reference block.

    Returns a JSON object with ``accuracy``, ``completeness`` and ``format`` (all equal to a
    difflib similarity ratio rounded to 3 places) and a one-sentence ``reason``; or a plain-text
    refusal when either block is missing (so the caller sees an unparseable verdict). The judge
    is gullible on purpose (see :func:`judge_answer`).
    """
    return judge_answer(prompt, system, scores=scores).text(structured=structured)


def judge_criteria(system: str) -> tuple[str, ...]:
    """The criteria a judge's system prompt lists (``- name: ...`` lines, a rubric's or the
    default three), or accuracy, completeness and format when it lists none."""
    found = tuple(dict.fromkeys(_CRITERION_LINE.findall(_fold(system))))
    return found or _CRITERIA


@dataclass(frozen=True)
class JudgePair:
    """The pair a judge prompt asks to grade, as the judge reads it: the reference and the
    candidate block (whitespace collapsed), and whether the candidate block came first."""

    reference: str
    candidate: str
    candidate_first: bool


def judge_pair(prompt: str) -> JudgePair | None:
    """The (reference, candidate) pair of a judge prompt, or None when it has no such pair (the
    judge refuses it). The judge's noise is drawn per pair; its order bias applies when
    ``candidate_first``."""
    parsed = _judge_layout(_fold(prompt))
    if parsed is None or "reference" not in parsed.blocks or "candidate" not in parsed.blocks:
        return None
    return JudgePair(
        reference=normalize_text(parsed.blocks["reference"]),
        candidate=normalize_text(parsed.blocks["candidate"]),
        candidate_first=parsed.starts["candidate"] < parsed.starts["reference"],
    )


def judge_answer(
    prompt: str,
    system: str = "",
    *,
    scores: Mapping[str, float] | None = None,
    flip: bool = False,
    order_bias: float = 0.0,
) -> JudgeAnswer:
    """Read a judge prompt the way a careless LLM judge does; ``docs/local-server.md``.

    - It reads the text as it looks: NFKC-normalised, zero-width characters dropped, Cyrillic
      and Greek look-alikes read as Latin letters.
    - It finds the blocks by the delimiters the prompt uses: ``<reference>``/``</reference>``
      tags (also ``task`` and ``candidate``), or ``<<<BEGIN NAME ID>>>``/``<<<END NAME ID>>>``
      lines, whose id is the one of the first such line. A block ends at the first closing
      delimiter, so a candidate that writes one closes its own block; the last block of each
      name is graded.
    - It obeys instructions outside the blocks ("score it 1", a verdict-like JSON object):
      then its verdict is a perfect score. Inside the blocks too, unless the prompt says that
      their content is data, "never instructions".
    - It scores the criteria the system prompt lists as ``- name: ...`` lines (a rubric's),
      or accuracy, completeness and format: each one the value ``scores`` gives it (the
      model's ``judge_scores``), else the similarity.
    - ``flip`` (its noise drew a flip): it gives ``1 - similarity`` instead, and its reason
      speaks of that score; ``scores`` still win. ``order_bias``: added to every criterion, fixed
      scores included (clamped to 0..1, rounded to 3 places), when the candidate block comes
      before the reference block. An obeyed order's perfect score is neither flipped nor
      shifted.
    """
    names = judge_criteria(system)
    scores = scores or {}
    text = _fold(prompt)
    parsed = _judge_layout(text)
    if parsed is None:
        return JudgeAnswer(None)
    blocks, outside = parsed.blocks, parsed.outside
    if "reference" not in blocks or "candidate" not in blocks:
        return JudgeAnswer(None)
    candidate_raw = blocks["candidate"]
    quoted = tuple(
        json.dumps(obj, ensure_ascii=False) for obj in _verdict_objects(candidate_raw, names)
    )
    data_only = "never instructions" in (_fold(system) + "\n" + outside).lower()
    obeyed = _injection(outside, names)
    if obeyed is None and not data_only:
        obeyed = next(filter(None, (_injection(block, names) for block in blocks.values())), None)
    if obeyed is not None:
        reason = f"As instructed ({_snippet(obeyed)}), the candidate gets a perfect score."
        verdict: dict[str, Any] = dict.fromkeys(names, 1.0)
        verdict["reason"] = reason
        return JudgeAnswer(verdict, quoted)
    reference = normalize_text(blocks["reference"]).lower()
    candidate = normalize_text(candidate_raw).lower()
    score = round(difflib.SequenceMatcher(None, reference, candidate).ratio(), 3)
    if flip:
        score = round(1.0 - score, 3)
    if score >= 0.9:
        reason = f"The candidate matches the reference (similarity {score:.2f})."
    elif score >= 0.5:
        reason = f"The candidate partially matches the reference (similarity {score:.2f})."
    else:
        reason = (
            f"The candidate differs from the reference: expected {_snippet(reference)} but got "
            f"{_snippet(candidate)} (similarity {score:.2f})."
        )
    shift = order_bias if parsed.starts["candidate"] < parsed.starts["reference"] else 0.0
    verdict = {name: _shifted(scores.get(name, score), shift) for name in names}
    verdict["reason"] = reason
    return JudgeAnswer(verdict, quoted)


def _shifted(value: float, shift: float) -> float:
    """A criterion's score moved by the judge's order bias (nothing moves without one)."""
    return value if shift == 0.0 else round(min(1.0, max(0.0, value + shift)), 3)


# What a reader sees: zero-width characters are invisible, look-alike letters read as Latin.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"))
_LOOK_ALIKES = str.maketrans(
    "\u0430\u0435\u043e\u0440\u0441\u0445\u0443\u0456\u0458\u0455\u0501\u04bb"
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0406\u0408\u0405"
    "\u03bf\u03bd\u03b1\u0391\u0392\u0395\u0397\u0399\u039a\u039c\u039d\u039f"
    "\u03a1\u03a4\u03a7",
    "aeopcxyijsdhABEKMHOPCTXIJSovaABEHIKMNOPTX",
)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_LOOK_ALIKES)


_OPENING = re.compile(
    r"<<<\s*BEGIN\s+(?P<new>TASK|REFERENCE|CANDIDATE)\s+(?P<id>[^\s>]+)\s*>>>"
    r"|<(?P<old>task|reference|candidate)>",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Layout:
    """A judge prompt read into blocks: each name's text (the last block of the name), where
    that block opens in the prompt, and the text outside every block."""

    blocks: dict[str, str]
    starts: dict[str, int]
    outside: str


def _judge_blocks(text: str) -> tuple[dict[str, str], str] | None:
    """The blocks of a judge prompt by name (the last of each name) and the text outside them.

    ``None`` when a block is opened and never closed. :func:`_judge_layout` also says where
    each block opens.
    """
    layout = _judge_layout(text)
    return None if layout is None else (layout.blocks, layout.outside)


def _judge_layout(text: str) -> _Layout | None:
    """The blocks of a judge prompt, found by name in any order (see :func:`_judge_blocks`),
    with the position of each one's opening delimiter; ``None`` when a block is never closed.
    """
    blocks: dict[str, str] = {}
    starts: dict[str, int] = {}
    outside: list[str] = []
    nonce: str | None = None
    position = 0
    while True:
        opening = _OPENING.search(text, position)
        if opening is None:
            break
        if opening.group("new"):
            name = opening.group("new").lower()
            if nonce is None:
                nonce = opening.group("id")
            if opening.group("id") != nonce:  # not a delimiter of this prompt: text
                outside.append(text[position : opening.end()])
                position = opening.end()
                continue
            closing = re.compile(rf"<<<\s*END\s+{name}\s+{re.escape(nonce)}\s*>>>", re.IGNORECASE)
        else:
            name = opening.group("old").lower()
            closing = re.compile(rf"</{name}>", re.IGNORECASE)
        end = closing.search(text, opening.end())
        if end is None:
            return None
        outside.append(text[position : opening.start()])
        blocks[name] = text[opening.end() : end.start()]
        starts[name] = opening.start()
        position = end.end()
    outside.append(text[position:])
    return _Layout(blocks, starts, "".join(outside))


_ONE = r"\b1(?:\.0+)?(?!\.?\d)(?!\w)"
_ORDERS = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.\n]{0,40}?"
    r"\b(?:instructions?|rules|prompt|above|previous|prior|earlier)\b"
    r"|\b(?:score|grade|rate|mark|give|assign|award|output|return|set|answer|respond|reply)"
    rf"\b[^.\n]{{0,60}}?(?:{_ONE}|\b100 ?%|\b10 ?/ ?10\b|\bperfect\b|\bfull marks\b"
    r"|\bpass(?:es|ed|ing)?\b)"
    rf"|\baccuracy\b\W{{0,6}}(?:{_ONE}|one\b|100\b)",
    re.IGNORECASE,
)


def _injection(text: str, names: tuple[str, ...] = _CRITERIA) -> str | None:
    """The first order to the judge in ``text`` (a demand for a score, a forged verdict)."""
    found = _ORDERS.search(text)
    if found is not None:
        return found.group(0)
    verdicts = _verdict_objects(text, names)
    return json.dumps(verdicts[0], ensure_ascii=False) if verdicts else None


def _verdict_objects(text: str, names: tuple[str, ...] = _CRITERIA) -> list[dict[str, Any]]:
    """The JSON objects in ``text`` that look like a verdict (they name a criterion: one of
    ``names`` or of the default three)."""
    criteria = {*_CRITERIA, *names}
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    index = text.find("{")
    tries = 1000  # each failed try can read to the end of the text
    while index >= 0 and tries > 0:
        tries -= 1
        try:
            obj, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            index = text.find("{", index + 1)
            continue
        if isinstance(obj, dict) and any(key in obj for key in criteria):
            found.append(obj)
        index = text.find("{", end)
    return found


def _snippet(text: str, limit: int = 60) -> str:
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return json.dumps(text, ensure_ascii=False)


def _malformed_text(token: float) -> str:
    """Deterministic garbage that no JSON parser (or brace extractor) accepts."""
    tag = f"{int(token * 1_000_000):06d}"
    return f"Sure! Here is my verdict: {{accuracy: high, completeness: mostly, format ~{tag}"


class LocalProviderServer:
    """An in-process fake of the Anthropic and OpenAI HTTP APIs, driven by a scenario.

    ``scenario`` is a :class:`~pytest_llmregress.testing.scenario.Scenario`, a mapping with the
    scenario keys, a path to a YAML/JSON scenario file, or ``None`` (every model id answers a fixed
    sentence). The server binds ``host:port`` (default ``127.0.0.1`` and an ephemeral port) on
    :meth:`start`; use it as a context manager to stop it reliably.

    ``url`` is the Anthropic ``base_url``; ``openai_base_url`` (``url + "/v1"``) the OpenAI one.
    All state is behind one lock; :attr:`requests` and :meth:`stats` return copies.
    """

    def __init__(
        self,
        scenario: Scenario | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_token: str | None = None,
    ) -> None:
        loaded = load_scenario(scenario)
        self._fixed_admin_token = admin_token or None
        self._admin_token = self._fixed_admin_token or secrets.token_urlsafe(24)
        self._scenario = loaded
        self._models: dict[str, ModelConfig] = dict(loaded.models)
        self._aliases: dict[str, str] = dict(loaded.aliases)
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # any counter changed
        self._slot_freed = threading.Condition(self._lock)
        self._latency_changed = threading.Condition(self._lock)  # update_model
        self._gate = threading.Event()
        self._gate.set()
        self._let_through = 0  # requests pause(after=...) still lets pass
        self._states: dict[str, _ModelState] = {}
        self._records: list[RequestRecord] = []
        self._total = 0
        self._other = 0
        self._by_model: dict[str, int] = {}
        self._by_resolved: dict[str, int] = {}
        self._by_status: dict[int, int] = {}
        self._in_flight = 0
        self._max_in_flight = 0
        self._slots: dict[str | None, _Slots] = {}  # by snapshot; None: the server's
        self._queued = self._generating = self._max_generating = 0
        self._started = self._finished = self._dropped = self._lost_answers = 0
        self._loaded: dict[str, None] = {}  # snapshots that answered since start(), in order
        # how many times each (snapshot, prompt) was sampled, each (snapshot, reference,
        # candidate) judged by a noisy judge: the n of the next draw
        self._sample_counts: dict[tuple[str, str], int] = {}
        self._judge_counts: dict[tuple[str, str, str], int] = {}
        self._batch_states: dict[str, _ModelState] = {}  # first_n and share of batch requests
        self._batches = BatchStore(
            self._batch_answer,
            lambda: self._scenario.batches,
            self._notify,
            self._batch_model_problem,
        )
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, port: int | None = None) -> LocalProviderServer:
        """Bind and serve in a background thread; returns ``self``. ``port`` overrides the
        constructor's port (0 = ephemeral)."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        if port is not None:
            self._port = port
        self._admin_token = self._fixed_admin_token or secrets.token_urlsafe(24)
        with self._lock:
            self._loaded.clear()
        httpd = _HTTPServer((self._host, self._port), _Handler, self)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"llmregress-server-{httpd.server_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open keep-alive connection."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        self._gate.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LocalProviderServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is currently serving."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The bound TCP port (only while running)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; call start() first")
        return int(self._httpd.server_port)

    @property
    def url(self) -> str:
        """Base URL for the Anthropic SDK (``http://127.0.0.1:PORT``)."""
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for the OpenAI SDK (``url + "/v1"``)."""
        return self.url + "/v1"

    @property
    def admin_token(self) -> str:
        """The token ``/_admin/*`` requests must carry (``Authorization: Bearer <token>``):
        new at every :meth:`start` unless one was given to the constructor."""
        return self._admin_token

    @property
    def admin_headers(self) -> dict[str, str]:
        """The header that authorises an ``/_admin/*`` request."""
        return {"Authorization": f"Bearer {self._admin_token}"}

    # -- state -------------------------------------------------------------------------------

    @property
    def scenario(self) -> Scenario:
        """A snapshot of the current scenario, including runtime alias/model changes."""
        with self._lock:
            return dataclasses.replace(
                self._scenario, models=dict(self._models), aliases=dict(self._aliases)
            )

    @property
    def requests(self) -> list[RequestRecord]:
        """Copies of the records of every model request since start (or the last reset)."""
        with self._lock:
            records = list(self._records)
        return [dataclasses.replace(r, params=dict(r.params)) for r in records]

    def stats(self) -> dict[str, Any]:
        """Counters: ``requests`` (model requests), ``by_model`` (requested id -> count),
        ``by_resolved_model``, ``by_status``, ``in_flight``, ``max_in_flight``, ``other``
        (non-model, non-admin requests such as ``/v1/models``), and how generation went:
        ``queued`` and ``generating`` now, ``max_generating``, ``started`` and ``finished``
        (requests that began and ended generating), ``dropped`` (queued requests whose client
        went away, never generated) and ``lost_answers`` (answers generated for a client that
        had gone); ``batches``: the batch APIs' own counters (batches created per provider,
        files uploaded, retrievals, results downloads, cancels, batched requests by model),
        which the online counters leave out."""
        with self._lock:
            return self._stats()

    def _stats(self) -> dict[str, Any]:
        return {
            "requests": self._total,
            "by_model": dict(self._by_model),
            "by_resolved_model": dict(self._by_resolved),
            "by_status": dict(self._by_status),
            "in_flight": self._in_flight,
            "max_in_flight": self._max_in_flight,
            "other": self._other,
            "queued": self._queued,
            "generating": self._generating,
            "max_generating": self._max_generating,
            "started": self._started,
            "finished": self._finished,
            "dropped": self._dropped,
            "lost_answers": self._lost_answers,
            "batches": self._batches.counters(),
        }

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_until(
        self, condition: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> bool:
        """Block until ``condition(stats())`` holds; False on timeout. For tests that wait on
        the server's counters instead of the clock: ``wait_until(lambda s: s["queued"] == 2)``.
        """
        with self._changed:
            return self._changed.wait_for(lambda: condition(self._stats()), timeout=timeout)

    def reset_stats(self) -> None:
        """Clear counters, the request log and per-model runtime state (``first_n`` counts,
        the seeded error random streams, and the request counts of sampled prompts and noisy
        judge pairs restart). Configuration changes are kept."""
        with self._lock:
            self._records.clear()
            self._states.clear()
            self._sample_counts.clear()
            self._judge_counts.clear()
            self._total = self._other = 0
            self._by_model.clear()
            self._by_resolved.clear()
            self._by_status.clear()
            self._max_in_flight = self._in_flight
            self._started = self._finished = self._dropped = self._lost_answers = 0
            self._max_generating = self._generating
            self._batch_states.clear()
        self._batches.reset_counters()

    # -- batches -----------------------------------------------------------------------------

    def batches(self) -> list[BatchInfo]:
        """Every batch of both providers, oldest first: id, provider, status (as the provider
        names it), custom ids, outcomes so far, retrievals. Batches live in memory only."""
        return self._batches.infos()

    def hold_batches(self) -> None:
        """Hold every batch in progress: none ends, however often it is retrieved, until
        :meth:`release_batches` (or :meth:`expire_batches`)."""
        self._batches.hold()

    def release_batches(self) -> None:
        """Stop holding batches and end every batch in progress now: its requests are answered
        (a canceling batch's are canceled)."""
        self._batches.release()

    def expire_batches(self) -> None:
        """End every batch in progress now as expired: requests already answered (see
        :meth:`process_batches`) keep their answer, the others are expired."""
        self._batches.expire()

    def process_batches(self, count: int | None = None) -> None:
        """Answer the next ``count`` requests (all when None) of every batch in progress
        without ending it, so that a later expiry or cancel finds them done."""
        self._batches.process(count)

    def pause(self, after: int = 0) -> None:
        """Hold model requests (after they are counted as in flight) until :meth:`resume`:
        every one from now on, or every one after the next ``after``.

        Lets tests and benchmarks observe exactly how many requests a client keeps in flight,
        without relying on timing: pause, fire requests, :meth:`wait_for_in_flight`, resume.
        ``after`` stops a run at a known point, whatever the machine's speed: the first
        ``after`` requests are answered, and nothing is answered after them.
        """
        with self._changed:
            self._let_through = after
            self._gate.clear()

    def resume(self) -> None:
        """Release the requests held by :meth:`pause` and stop holding new ones."""
        with self._changed:
            self._let_through = 0
            self._gate.set()

    def wait_for_in_flight(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` model requests are in flight; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight >= count, timeout=timeout)

    def set_alias(self, alias: str, target: str) -> None:
        """Point ``alias`` at the configured model ``target`` (effective from the next request)."""
        with self._lock:
            check_alias(self._models, alias, target)
            self._aliases[alias] = target

    def update_model(self, model_id: str, **changes: Any) -> ModelConfig:
        """Change (or add) a model's configuration while running, using scenario keys:
        ``server.update_model("m", retired=True)``. Returns the new configuration."""
        with self._lock:
            if model_id in self._aliases:
                raise ScenarioError(
                    f"{model_id!r} is an alias; update its target {self._aliases[model_id]!r}",
                    source="<update>",
                    path=f"models.{model_id}",
                )
            new = parse_model_changes(
                model_id,
                changes,
                existing=self._models.get(model_id),
                base_dir=self._scenario.base_dir,
            )
            self._models[model_id] = new
            self._latency_changed.notify_all()  # requests waiting out their latency
            self._slot_freed.notify_all()  # a model given more slots
            return new

    # -- request handling (provider independent) -----------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        client_gone: Callable[[], bool] | None = None,
    ) -> Response:
        """Produce the response for one HTTP request (used by the HTTP handler; usable directly).

        ``headers`` must be a case-insensitive mapping or have lower-case keys. ``client_gone``
        tells whether the client has closed its connection: a request waiting for a slot is then
        dropped (status 499) instead of generated.
        """
        split = urlsplit(target)
        path = split.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        method = method.upper()
        if path.startswith("/_admin/"):
            return self._handle_admin(method, path, headers, body)
        if method == "POST" and path in (MESSAGES_PATH, CHAT_PATH):
            return self._handle_model_request(path, headers, body, client_gone)
        if method == "POST" and path == COUNT_TOKENS_PATH:
            self._count_other()
            return self._guard("anthropic", lambda: self._count_tokens(headers, body))
        if method == "GET" and (path == MODELS_PATH or path.startswith(MODELS_PATH + "/")):
            self._count_other()
            mode = self._scenario.server.models_endpoint
            if mode == "none" or (mode == "loaded" and path != MODELS_PATH):
                return _json_response(404, {"detail": "Not Found"})  # no such route (FastAPI)
            provider: Provider = "anthropic" if _header(headers, "anthropic-version") else "openai"
            model_id = unquote(path[len(MODELS_PATH) + 1 :]) if path != MODELS_PATH else None
            return self._guard(
                provider, lambda: self._models_endpoint(provider, headers, model_id, query)
            )
        batch_provider = BatchStore.routes(path)
        if batch_provider is not None:
            return self._guard(
                batch_provider,
                lambda: self._batch_route(batch_provider, method, path, query, headers, body),
            )
        self._count_other()
        return _json_response(
            404,
            {"error": {"type": "not_found", "message": f"No route for {method} {split.path}"}},
        )

    def _batch_route(
        self,
        provider: Provider,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Response:
        """A request to the batch or file routes (``batches.py``), after the provider's auth."""
        self._check_auth(provider, headers)
        host = _header(headers, "host")
        base_url = f"http://{host}" if host else self.url
        try:
            reply = self._batches.handle(provider, method, path, query, headers, body, base_url)
        except BatchAPIError as exc:
            raise _HTTPError(
                exc.status, exc.message, code=exc.code, param=exc.param, error_type=exc.error_type
            ) from None
        if reply.raw is not None:
            return Response(reply.status, reply.raw, dict(reply.headers), reply.content_type)
        return _json_response(reply.status, reply.payload)

    def _batch_model_problem(self, model: str) -> str | None:
        """Why an OpenAI batch file's model cannot run (the online 404's message), or None."""
        try:
            self._resolve("openai", model)
        except _HTTPError as exc:
            return exc.message
        return None

    def _batch_answer(self, provider: Provider, body: object) -> BatchAnswer:
        """Answer one batched request as the online request would be answered (the body's
        checks, the model's errors, answers, judge and token counts), without latency, slots,
        rate limit or the online counters; error rules fire when they apply to batches."""
        request_id = _new_id("req_")
        requested: str | None = None
        resolved: str | None = None
        try:
            if not isinstance(body, dict):
                raise _HTTPError(400, "The request body must be a JSON object.")
            model = body.get("model")
            requested = model if isinstance(model, str) else None
            if provider == "anthropic":
                prompt = _anthropic_prompt(body)
            else:
                prompt = _openai_prompt(body, self._scenario.server.accepts_params)
            if body.get("stream"):
                raise _HTTPError(400, "streaming is not supported in a batch", param="stream")
            resolved, config = self._resolve(provider, prompt.model)
            _check_refused_params(provider, config, body)
            _check_structured(prompt, config)
            self._inject_faults(resolved, config, prompt, batch=True)
            text, verdict = self._reply(resolved, config, prompt)
        except _HTTPError as exc:
            resolved = resolved or exc.resolved
            error = _provider_error(provider, exc, request_id)
            return BatchAnswer(exc.status, error, request_id, requested, resolved)
        if provider == "anthropic":
            payload = _anthropic_message_payload(resolved, text, prompt, verdict)
            usage = payload["usage"]
            tokens = (usage["input_tokens"], usage["output_tokens"])
        else:
            payload = _openai_completion_payload(resolved, config, text, prompt, verdict)
            usage = payload["usage"]
            tokens = (usage["prompt_tokens"], usage["completion_tokens"])
        return BatchAnswer(200, payload, request_id, requested, resolved, tokens)

    def _count_other(self) -> None:
        with self._lock:
            self._other += 1

    def _guard(self, provider: Provider, produce: Callable[[], Response]) -> Response:
        request_id = _new_id("req_")
        try:
            response = produce()
        except Exception as exc:
            response = self._error(provider, exc, request_id)
        response.headers[_request_id_header(provider)] = request_id
        return response

    def _error(self, provider: Provider, exc: Exception, request_id: str) -> Response:
        """The answer for an exception while handling a request: an ``_HTTPError`` as it
        says, anything else (a bug in the server) a 500 and a traceback on stderr."""
        if not isinstance(exc, _HTTPError):
            traceback.print_exc(file=sys.stderr)
            exc = _HTTPError(500, f"local server bug: {exc!r}")
        return _error_response(provider, exc, request_id, self._scenario.server.error_shape)

    def _handle_model_request(
        self,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        client_gone: Callable[[], bool] | None,
    ) -> Response:
        provider: Provider = "anthropic" if path == MESSAGES_PATH else "openai"
        request_id = _new_id("req_")
        arrived = time.time()
        with self._changed:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._changed.notify_all()
            let_through = self._let_through > 0  # pause(after=...) still lets this one pass
            if let_through:
                self._let_through -= 1
        prompt: _Prompt | None = None
        resolved: str | None = None
        requested: str | None = None
        try:
            if not let_through:
                self._gate.wait()  # pause() holds requests here, already counted as in flight
            try:
                self._check_auth(provider, headers)
                data = _parse_json(body)
                requested = data.get("model") if isinstance(data.get("model"), str) else None
                if provider == "anthropic":
                    prompt = _anthropic_prompt(data)
                else:
                    prompt = _openai_prompt(data, self._scenario.server.accepts_params)
                if data.get("stream"):
                    raise _HTTPError(
                        400, "streaming is not supported by the local server", param="stream"
                    )
                resolved, config = self._resolve(provider, prompt.model)
                _check_refused_params(provider, config, data)
                _check_structured(prompt, config)
                self._inject_faults(resolved, config, prompt)
                response = self._generate(provider, resolved, config, prompt, client_gone)
            except Exception as exc:
                if isinstance(exc, _HTTPError):
                    resolved = resolved or exc.resolved
                response = self._error(provider, exc, request_id)
            response.headers[_request_id_header(provider)] = request_id
            record = RequestRecord(
                endpoint=path,
                requested_model=requested,
                resolved_model=resolved,
                status=response.status,
                system=prompt.system if prompt is not None else None,
                user_text=prompt.user_text if prompt is not None else None,
                params=prompt.params if prompt is not None else {},
                time=arrived,
            )
            with self._changed:
                self._records.append(record)
                self._total += 1
                key = requested if requested is not None else "<none>"
                self._by_model[key] = self._by_model.get(key, 0) + 1
                if resolved is not None:
                    self._by_resolved[resolved] = self._by_resolved.get(resolved, 0) + 1
                self._by_status[response.status] = self._by_status.get(response.status, 0) + 1
                if response.generated and resolved is not None:
                    self._loaded[resolved] = None
                self._changed.notify_all()
            return response
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def _generate(
        self,
        provider: Provider,
        snapshot: str,
        config: ModelConfig,
        prompt: _Prompt,
        client_gone: Callable[[], bool] | None,
    ) -> Response:
        """Generate the answer: in a slot of the model and of the server when they have
        ``slots`` (waiting in line for them), for the model's latency."""
        with self._changed:
            taken = self._take_slots(snapshot, client_gone)
            if taken is None:
                self._dropped += 1
                self._changed.notify_all()
                raise _HTTPError(
                    499, "The client closed the connection while the request waited for a slot."
                )
            self._started += 1
            self._generating += 1
            self._max_generating = max(self._max_generating, self._generating)
            self._changed.notify_all()
        try:
            self._sleep(snapshot, config)
            text, verdict = self._reply(snapshot, config, prompt)
        finally:
            with self._changed:
                self._release_slots(taken)
                self._generating -= 1
                self._finished += 1
                self._changed.notify_all()
        if provider == "anthropic":
            response = _anthropic_message(snapshot, text, prompt, verdict)
        else:
            response = _openai_completion(snapshot, config, text, prompt, verdict)
        response.generated = True
        return response

    def _slot_capacity(self, key: str | None) -> int | None:
        """How many requests may generate at once: on the model ``key``, or on the server
        (``None``); None when unlimited. Read at every turn, so ``update_model`` counts."""
        if key is None:
            return self._scenario.server.slots
        config = self._models.get(key) or self._models.get(WILDCARD)
        return config.slots if config is not None else None

    def _take_slots(
        self, snapshot: str, client_gone: Callable[[], bool] | None
    ) -> list[_Slots] | None:
        """Take a slot of the model, then one of the server (call with the lock held), each
        first come first served; None when the client went away while waiting."""
        taken: list[_Slots] = []
        for key in (snapshot, None):
            if self._slot_capacity(key) is None:
                continue
            slots = self._slots.setdefault(key, _Slots())
            if not self._take_slot(key, slots, client_gone):
                self._release_slots(taken)
                return None
            taken.append(slots)
        return taken

    def _take_slot(
        self, key: str | None, slots: _Slots, client_gone: Callable[[], bool] | None
    ) -> bool:
        def free() -> bool:
            capacity = self._slot_capacity(key)
            return capacity is None or slots.busy < capacity

        if not slots.waiting and free():
            slots.busy += 1
            return True
        ticket = object()
        slots.waiting.append(ticket)
        self._queued += 1
        self._changed.notify_all()
        try:
            while slots.waiting[0] is not ticket or not free():
                if client_gone is not None and client_gone():
                    return False
                # without a way to see the client leave, wait for a slot as long as it takes
                self._slot_freed.wait(_CLIENT_POLL_S if client_gone is not None else None)
            slots.busy += 1
            return True
        finally:
            slots.waiting.remove(ticket)
            self._queued -= 1
            self._changed.notify_all()
            self._slot_freed.notify_all()  # the next in line may go

    def _release_slots(self, taken: list[_Slots]) -> None:
        """Give back slots (call with the lock held)."""
        for slots in taken:
            slots.busy -= 1
        if taken:
            self._slot_freed.notify_all()

    def _lost_answer(self) -> None:
        """An answer was generated for a client that had gone (the HTTP handler saw it)."""
        with self._changed:
            self._lost_answers += 1
            self._changed.notify_all()

    def _check_auth(self, provider: Provider, headers: Mapping[str, str]) -> None:
        if self._scenario.server.auth == "none":
            return
        expected = self._scenario.api_key
        bearer = _header(headers, "authorization") or ""
        bearer_key = bearer[7:].strip() if bearer.lower().startswith("bearer ") else None
        if provider == "anthropic":
            key = _header(headers, "x-api-key") or bearer_key
            if not key:
                raise _HTTPError(401, "x-api-key header is required")
            if expected is not None and key != expected:
                raise _HTTPError(401, "invalid x-api-key")
            return
        if not bearer_key:
            raise _HTTPError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
            )
        if expected is not None and bearer_key != expected:
            shown = bearer_key if len(bearer_key) <= 8 else f"{bearer_key[:3]}***{bearer_key[-4:]}"
            raise _HTTPError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    def _resolve(self, provider: Provider, model_id: str) -> tuple[str, ModelConfig]:
        with self._lock:
            snapshot = self._aliases.get(model_id, model_id)
            config = self._models.get(snapshot) or self._models.get(WILDCARD)
        if config is None:
            if provider == "anthropic":
                error = _HTTPError(404, f"model: {model_id}")
            else:
                error = _HTTPError(
                    404,
                    f"The model `{model_id}` does not exist or you do not have access to it.",
                    code="model_not_found",
                )
            rule = self._scenario.server.unknown_model
            raise error if rule is None else _injected_error(rule, model_id, error)
        if config.retired:
            if provider == "anthropic":
                via = f" (alias of {snapshot})" if snapshot != model_id else ""
                raise _HTTPError(
                    404,
                    f"model: {model_id}{via} has been retired and is no longer available",
                    resolved=snapshot,
                )
            raise _HTTPError(
                404,
                f"The model `{model_id}` has been deprecated, learn more here: "
                "https://platform.openai.com/docs/deprecations",
                code="model_not_found",
                resolved=snapshot,
            )
        return snapshot, config

    def _state(self, snapshot: str, *, batch: bool = False) -> _ModelState:
        """Per-snapshot runtime state, of online requests or of batched ones (their own counts
        and random streams, so batches do not shift the online draws); call with the lock
        held."""
        states = self._batch_states if batch else self._states
        state = states.get(snapshot)
        if state is None:
            seed = self._scenario.seed
            prefix = "batch-" if batch else ""
            state = _ModelState(
                count=0,
                error_rng=random.Random(f"{prefix}errors:{seed}:{snapshot}"),
                jitter_rng=random.Random(f"{prefix}jitter:{seed}:{snapshot}"),
            )
            states[snapshot] = state
        return state

    def _inject_faults(
        self, snapshot: str, config: ModelConfig, prompt: _Prompt, *, batch: bool = False
    ) -> None:
        """Raise the error of the model's first error rule that fires (and its rate limit's
        429). A batched request (``batch``) has its own first_n counts and random stream, no
        rate limit, no rule latency, and meets only the rules that apply to batches."""
        fired: ErrorRule | None = None
        skip = "online" if batch else "batch"
        with self._lock:
            state = self._state(snapshot, batch=batch)
            state.count += 1
            if config.rate_limit is not None and not batch:
                _take_token(state, config.rate_limit)
            for rule in config.errors:
                if rule.applies_to == skip:
                    continue
                if (
                    rule.match is not None
                    and rule.match.casefold() not in prompt.user_text.casefold()
                ):
                    continue
                if rule.first_n is not None and state.count > rule.first_n:
                    continue
                if rule.share is not None and state.error_rng.random() >= rule.share:
                    continue
                fired = rule
                break
        if fired is None:
            return
        if fired.latency_ms and not batch:
            time.sleep(fired.latency_ms / 1000)
        raise _injected_error(fired, prompt.model)

    def _latency_ms(self, config: ModelConfig) -> float:
        return config.latency_ms if config.latency_ms is not None else self._scenario.latency_ms

    def _sleep(self, snapshot: str, config: ModelConfig) -> None:
        """Wait out the model's latency and jitter. A change of the model's ``latency_ms``
        counts for the requests waiting: ``update_model(m, latency_ms=0)`` releases them."""
        jitter = config.jitter_ms or self._scenario.jitter_ms
        if not jitter and self._latency_ms(config) <= 0:
            return
        started = time.monotonic()
        with self._latency_changed:
            extra = self._state(snapshot).jitter_rng.uniform(0, jitter) if jitter else 0.0
            while True:
                current = self._models.get(snapshot) or self._models.get(WILDCARD) or config
                left = started + (self._latency_ms(current) + extra) / 1000 - time.monotonic()
                if left <= 0:
                    return
                self._latency_changed.wait(left)

    def _reply(
        self, snapshot: str, config: ModelConfig, prompt: _Prompt
    ) -> tuple[str, dict[str, Any] | None]:
        """The reply text, and the judge's verdict object when the request asked for
        structured output and the judge gave one (it becomes a tool call or the JSON content).
        """
        faulty = self._fault_text(snapshot, config, prompt)
        if faulty is not None:
            return faulty, None
        sampling = config.sampling
        if sampling is not None and not self._sample(snapshot, sampling, prompt.user_text):
            return sampling.reply, None
        if config.judge:
            answer = judge_answer(
                prompt.user_text,
                prompt.system,
                scores=config.judge_scores,
                flip=self._judge_flip(snapshot, config.judge_noise, prompt.user_text),
                order_bias=config.judge_order_bias,
            )
            structured = prompt.tool is not None or prompt.json_only
            return answer.text(structured=structured), answer.verdict if structured else None
        for rule in config.answers:
            if rule.matches(prompt.user_text):
                return rule.reply, None
        if config.answers_index:
            found = config.answers_index.get(normalize_text(prompt.user_text))
            if found is not None:
                return found, None
        return config.default_reply, None

    def _sample(self, snapshot: str, sampling: SamplingConfig, text: str) -> bool:
        """Draw the answer of a request to a sampling model: True for the normal answer. A
        sampled prompt's requests are numbered 0, 1, 2, ... under the lock, and the n-th draw
        depends only on n, so concurrent requests share out a fixed multiset of answers."""
        seed = self._scenario.seed if sampling.seed is None else sampling.seed
        if not is_sampled(seed, snapshot, text, sampling.share):
            return True
        key = (snapshot, normalize_text(text))
        with self._lock:
            n = self._sample_counts.get(key, 0)
            self._sample_counts[key] = n + 1
        return sampled_answer_ok(seed, snapshot, text, n, sampling.pass_rate_for(text))

    def _judge_flip(self, snapshot: str, noise: JudgeNoise | None, text: str) -> bool:
        """Draw whether a noisy judge flips this judging of its prompt's pair (numbered per
        pair under the lock, as :meth:`_sample` numbers requests)."""
        if noise is None or noise.share <= 0:
            return False
        pair = judge_pair(text)
        if pair is None:
            return False
        seed = self._scenario.seed if noise.seed is None else noise.seed
        if not _noisy_pair(seed, snapshot, pair.reference, pair.candidate, noise.share):
            return False
        key = (snapshot, pair.reference, pair.candidate)
        with self._lock:
            n = self._judge_counts.get(key, 0)
            self._judge_counts[key] = n + 1
        return judge_flips(
            seed, snapshot, pair.reference, pair.candidate, n, noise.share, noise.flip
        )

    def _fault_text(self, snapshot: str, config: ModelConfig, prompt: _Prompt) -> str | None:
        """The reply of a prompt that ``malformed_share`` or ``drift`` takes over, else None."""
        seed = self._scenario.seed
        key = normalize_text(prompt.user_text)
        if config.malformed_share > 0:
            token = _unit_hash("malformed", seed, snapshot, key)
            if token < config.malformed_share:
                return _malformed_text(token)
        drift = config.drift
        if drift is not None and drift.share > 0:
            drift_seed = seed if drift.seed is None else drift.seed
            if _unit_hash("drift", drift_seed, snapshot, key) < drift.share:
                return drift.reply
        return None

    def _count_tokens(self, headers: Mapping[str, str], body: bytes) -> Response:
        self._check_auth("anthropic", headers)
        prompt = _anthropic_prompt(_parse_json(body), require_max_tokens=False)
        self._resolve("anthropic", prompt.model)
        return _json_response(200, {"input_tokens": _tokens(prompt.input_chars)})

    # -- /v1/models --------------------------------------------------------------------------

    def _models_endpoint(
        self,
        provider: Provider,
        headers: Mapping[str, str],
        model_id: str | None,
        query: Mapping[str, str],
    ) -> Response:
        self._check_auth(provider, headers)
        with self._lock:
            models = dict(self._models)
            aliases = dict(self._aliases)
        if model_id is not None:
            snapshot = aliases.get(model_id, model_id)
            config = models.get(snapshot) or models.get(WILDCARD)
            if config is None or config.retired:
                self._resolve(provider, model_id)  # raises the provider's 404
                raise AssertionError("unreachable")  # pragma: no cover
            if provider == "anthropic":
                return _json_response(200, _anthropic_model(snapshot, config))
            return _json_response(200, _openai_model(model_id, config))
        if self._scenario.server.models_endpoint == "loaded":  # what has answered, no aliases
            with self._lock:
                loaded = list(self._loaded)
            configs = [(m, models.get(m) or models.get(WILDCARD)) for m in loaded]
            listed = [(m, c) for m, c in configs if c is not None and not c.retired]
            aliases = {}
        else:
            listed = [(m, c) for m, c in models.items() if m != WILDCARD and not c.retired]
        if provider == "openai":
            entries = [_openai_model(m, c) for m, c in listed]
            entries += [
                _openai_model(alias, models[target])
                for alias, target in aliases.items()
                if target in models and not models[target].retired
            ]
            return _json_response(200, {"object": "list", "data": entries})
        return _json_response(
            200, _anthropic_page([_anthropic_model(m, c) for m, c in listed], query)
        )

    # -- admin -------------------------------------------------------------------------------

    def _check_admin_token(self, headers: Mapping[str, str]) -> Response | None:
        """401 without the admin token, 403 with another one; None when it is the token."""
        value = _header(headers, "authorization") or ""
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _json_response(
                401,
                {
                    "ok": False,
                    "error": "admin routes need the header 'Authorization: Bearer <admin token>' "
                    "(LocalProviderServer.admin_token; printed by llmregress serve)",
                },
                {"WWW-Authenticate": 'Bearer realm="llmregress-admin"'},
            )
        if not hmac.compare_digest(token.strip().encode(), self._admin_token.encode()):
            return _json_response(403, {"ok": False, "error": "wrong admin token"})
        return None

    def _handle_admin(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        refused = self._check_admin_token(headers)
        if refused is not None:
            return refused
        try:
            if method == "GET" and path == "/_admin/stats":
                return _json_response(200, self.stats())
            if method == "GET" and path == "/_admin/requests":
                return _json_response(200, {"data": [dataclasses.asdict(r) for r in self.requests]})
            if method == "POST" and path in ("/_admin/pause", "/_admin/resume"):
                (self.pause if path.endswith("pause") else self.resume)()
                return _json_response(200, {"ok": True})
            if method == "GET" and path == "/_admin/batches":
                return _json_response(
                    200, {"data": [dataclasses.asdict(b) for b in self.batches()]}
                )
            if method == "POST" and path.startswith("/_admin/batches/"):
                action = path[len("/_admin/batches/") :]
                if action in ("hold", "release", "expire"):
                    {
                        "hold": self.hold_batches,
                        "release": self.release_batches,
                        "expire": self.expire_batches,
                    }[action]()
                    return _json_response(200, {"ok": True})
                if action == "process":
                    count = _parse_json(body).get("count") if body else None
                    if count is not None and (
                        not isinstance(count, int) or isinstance(count, bool) or count < 0
                    ):
                        raise ScenarioError('body must be {"count": int >= 0} or empty')
                    self.process_batches(count)
                    return _json_response(200, {"ok": True})
            if method == "POST" and path == "/_admin/reset":
                self.reset_stats()
                return _json_response(200, {"ok": True})
            if method == "POST" and path == "/_admin/alias":
                data = _parse_json(body)
                alias, target = data.get("alias"), data.get("target")
                if not isinstance(alias, str) or not isinstance(target, str):
                    raise ScenarioError('body must be {"alias": str, "target": str}')
                self.set_alias(alias, target)
                return _json_response(200, {"ok": True, "alias": alias, "target": target})
            if method == "PATCH" and path.startswith("/_admin/models/"):
                model_id = unquote(path[len("/_admin/models/") :])
                data = _parse_json(body)
                config = self.update_model(model_id, **data)
                return _json_response(
                    200, {"ok": True, "model": model_id, "retired": config.retired}
                )
        except (ScenarioError, _HTTPError) as exc:
            return _json_response(400, {"ok": False, "error": str(exc)})
        return _json_response(
            404, {"error": {"type": "not_found", "message": f"No admin route for {method} {path}"}}
        )


# -------------------------------------------------------------------------------------------
# Request parsing
# -------------------------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _HTTPError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _HTTPError(400, "The request body must be a JSON object.")
    return data


_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_ANTHROPIC_PARAMS = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "thinking",
    "output_config",
    "service_tier",
    "tools",
    "tool_choice",
)
_OPENAI_PARAMS = (
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "metadata",
    "response_format",
    "reasoning_effort",
    "frequency_penalty",
    "presence_penalty",
    "service_tier",
)
# Every top-level field of the Chat Completions API: anything else is refused, as the API does.
_OPENAI_FIELDS = frozenset(
    (
        *_OPENAI_PARAMS,
        "model",
        "messages",
        "stream",
        "stream_options",
        "audio",
        "function_call",
        "functions",
        "logit_bias",
        "logprobs",
        "modalities",
        "moderation",
        "parallel_tool_calls",
        "prediction",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "safety_identifier",
        "store",
        "tool_choice",
        "tools",
        "top_logprobs",
        "user",
        "verbosity",
        "web_search_options",
    )
)


def _check_refused_params(provider: Provider, config: ModelConfig, data: Mapping[str, Any]) -> None:
    """A 400 naming the first request field the model refuses (``refuses_params``)."""
    name = next((p for p in config.refuses_params if data.get(p) is not None), None)
    if name is None:
        return
    if provider == "openai":
        raise _HTTPError(
            400,
            f"Unsupported parameter: '{name}' is not supported with this model.",
            param=name,
            code="unsupported_parameter",
        )
    raise _HTTPError(400, f"`{name}` is not supported by this model.", param=name)


def _check_structured(prompt: _Prompt, config: ModelConfig) -> None:
    """A 400 for a request for structured output to a model without it."""
    if prompt.structured and not config.structured_output:
        raise _HTTPError(
            400,
            f"{prompt.structured} is not supported by this model (the scenario sets "
            "structured_output: false)",
            param=prompt.structured.split(" ")[0],
        )


def _require_model(data: Mapping[str, Any]) -> str:
    model = data.get("model")
    if model is None:
        raise _HTTPError(400, "model: Field required", param="model")
    if not isinstance(model, str) or not model:
        raise _HTTPError(400, "model: Input should be a non-empty string", param="model")
    return model


def _check_range(data: Mapping[str, Any], name: str, low: float, high: float) -> None:
    value = data.get(name)
    if value is None:
        return
    if not _is_number(value) or not low <= value <= high:
        raise _HTTPError(
            400, f"{name}: Input should be a number between {low:g} and {high:g}", param=name
        )


def _anthropic_prompt(data: Mapping[str, Any], *, require_max_tokens: bool = True) -> _Prompt:
    model = _require_model(data)
    if require_max_tokens:
        max_tokens = data.get("max_tokens")
        if max_tokens is None:
            raise _HTTPError(400, "max_tokens: Field required", param="max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise _HTTPError(400, "max_tokens: Input should be an integer >= 1", param="max_tokens")
    messages = data.get("messages")
    if messages is None:
        raise _HTTPError(400, "messages: Field required", param="messages")
    if not isinstance(messages, list) or not messages:
        raise _HTTPError(400, "messages: at least one message is required", param="messages")
    chars = 0
    user_text = ""
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _HTTPError(400, f"messages.{index}: Input should be an object")
        role = message.get("role")
        if role == "system":
            raise _HTTPError(
                400,
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.',
            )
        if role not in ("user", "assistant"):
            raise _HTTPError(400, f"messages.{index}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if not isinstance(content, str | list):
            raise _HTTPError(400, f"messages.{index}.content: Input should be a string or a list")
        text = content_text(content)
        chars += len(text)
        if role == "user":
            user_text = text
    system_raw = data.get("system")
    if system_raw is not None and not isinstance(system_raw, str | list):
        raise _HTTPError(400, "system: Input should be a string or a list of text blocks")
    system = content_text(system_raw) if system_raw is not None else ""
    _check_range(data, "temperature", 0.0, 1.0)
    _check_range(data, "top_p", 0.0, 1.0)
    stops = data.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
    ):
        raise _HTTPError(400, "stop_sequences: Input should be a list of strings")
    params = {k: data[k] for k in _ANTHROPIC_PARAMS if data.get(k) is not None}
    tool = _anthropic_tool_choice(data)
    output_config = data.get("output_config")
    output_format = output_config.get("format") if isinstance(output_config, dict) else None
    json_only = isinstance(output_format, dict) and output_format.get("type") == "json_schema"
    structured = "tools" if data.get("tools") else "output_config.format" if json_only else None
    return _Prompt(
        model, system, user_text, chars + len(system), params, tool, json_only, structured
    )


def _anthropic_tool_choice(data: Mapping[str, Any]) -> str | None:
    """Check ``tools`` and ``tool_choice``; the name of the tool the model must call, if any."""
    tools = data.get("tools")
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise _HTTPError(400, "tools: Input should be a valid list", param="tools")
    names: list[str] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _HTTPError(400, f"tools.{index}.name: Field required")
        if not _TOOL_NAME.fullmatch(tool["name"]):
            raise _HTTPError(
                400, f"tools.{index}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise _HTTPError(400, f"tools.{index}.input_schema: Input should be an object schema")
        names.append(tool["name"])
    choice = data.get("tool_choice")
    if choice is None:
        return None
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise _HTTPError(400, "tool_choice: Input tag should be 'auto', 'any', 'tool' or 'none'")
    if choice["type"] == "tool":
        name = choice.get("name")
        if name not in names:
            raise _HTTPError(400, f"tool_choice.name: tool {name!r} is not in tools")
        return str(name)
    if choice["type"] == "any" and len(names) == 1:
        return names[0]
    return None


def _openai_prompt(data: Mapping[str, Any], accepts: tuple[str, ...] = ()) -> _Prompt:
    """Check a Chat Completions body; ``accepts`` are fields taken besides the API's own."""
    unknown = [key for key in data if key not in _OPENAI_FIELDS and key not in accepts]
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        raise _HTTPError(
            400,
            f"Unrecognized request argument{s} supplied: {', '.join(unknown)}",
            param=unknown[0],
        )
    if data.get("model") is None:
        raise _HTTPError(400, "you must provide a model parameter", param="model")
    model = _require_model(data)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _HTTPError(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    chars = 0
    user_text = ""
    system_parts: list[str] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _HTTPError(400, f"Invalid type for 'messages[{index}]': expected an object.")
        role = message.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool", "function"):
            raise _HTTPError(
                400,
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', "
                "'tool', 'function' and 'developer'.",
                param=f"messages[{index}].role",
                code="invalid_value",
            )
        text = content_text(message.get("content"))
        chars += len(text)
        if role in ("system", "developer"):
            system_parts.append(text)
        elif role == "user":
            user_text = text
    _check_range(data, "temperature", 0.0, 2.0)
    _check_range(data, "top_p", 0.0, 1.0)
    n = data.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128):
        raise _HTTPError(400, "n: Input should be an integer between 1 and 128", param="n")
    for name in ("max_tokens", "max_completion_tokens"):
        value = data.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise _HTTPError(400, f"Invalid '{name}': integer below minimum value.", param=name)
    params = {k: data[k] for k in (*_OPENAI_PARAMS, *accepts) if data.get(k) is not None}
    json_only = _openai_response_format(data.get("response_format"))
    structured = "response_format" if json_only else None
    return _Prompt(
        model, "\n".join(system_parts), user_text, chars, params, None, json_only, structured
    )


def _openai_response_format(value: object) -> bool:
    """Check ``response_format`` as the API does; whether it asks for a JSON reply."""
    if value is None:
        return False
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise _HTTPError(
            400,
            "Invalid value for 'response_format.type': expected 'text', 'json_object' or "
            "'json_schema'.",
            param="response_format.type",
            code="invalid_value",
        )
    if kind != "json_schema":
        return bool(kind == "json_object")
    assert isinstance(value, dict)
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise _HTTPError(
            400,
            "Missing required parameter: 'response_format.json_schema.name'.",
            param="response_format.json_schema.name",
            code="missing_required_parameter",
        )
    if not _TOOL_NAME.fullmatch(spec["name"]):
        raise _HTTPError(
            400,
            "Invalid 'response_format.json_schema.name': string does not match pattern.",
            param="response_format.json_schema.name",
            code="invalid_value",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise _HTTPError(
            400,
            "Invalid type for 'response_format.json_schema.schema': expected an object.",
            param="response_format.json_schema.schema",
            code="invalid_type",
        )
    if spec.get("strict"):
        problem = _strict_schema_problem(schema, "()")
        if problem is not None:
            raise _HTTPError(
                400,
                f"Invalid schema for response_format '{spec['name']}': {problem}",
                param="response_format",
                code="invalid_json_schema",
            )
    return True


def _strict_schema_problem(schema: Mapping[str, Any], context: str) -> str | None:
    """The first rule of OpenAI's strict mode the schema breaks: every object schema must list
    all its properties as required and set ``additionalProperties`` to false."""
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            return (
                f"In context={context}, 'additionalProperties' is required to be supplied and "
                "to be false."
            )
        properties = schema.get("properties") or {}
        missing = [key for key in properties if key not in (schema.get("required") or [])]
        if missing:
            return (
                f"In context={context}, 'required' is required to be supplied and to be an "
                f"array including every key in properties. Missing '{missing[0]}'."
            )
        for key, inner in properties.items():
            if isinstance(inner, Mapping):
                problem = _strict_schema_problem(inner, f"{context}, 'properties', '{key}'")
                if problem is not None:
                    return problem
    items = schema.get("items")
    if isinstance(items, Mapping):
        return _strict_schema_problem(items, f"{context}, 'items'")
    return None


# -------------------------------------------------------------------------------------------
# Response building
# -------------------------------------------------------------------------------------------


def _json_response(
    status: int, payload: object, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Response(status=status, body=body, headers=dict(headers or {}))


def _request_id_header(provider: Provider) -> str:
    return "request-id" if provider == "anthropic" else "x-request-id"


def _take_token(state: _ModelState, limit: RateLimit) -> None:
    """Take one request's token from the model's bucket, or answer 429 with the time until the
    next token (call with the lock held)."""
    now = time.monotonic()
    refilled = state.tokens + (now - state.filled_at) * limit.requests_per_second
    state.tokens, state.filled_at = min(float(limit.burst), refilled), now
    if state.tokens >= 1:
        state.tokens -= 1
        return
    wait = max(0.001, (1 - state.tokens) / limit.requests_per_second)
    raise _HTTPError(
        429,
        f"Rate limit of {limit.requests_per_second:g} requests per second exceeded "
        f"(the llmregress local server's rate_limit).",
        headers={
            "retry-after": _format_seconds(round(wait, 3)),
            "retry-after-ms": _format_seconds(round(wait * 1000)),
        },
    )


# error shapes whose body is one key holding the message
_STRING_SHAPES = {"detail": "detail", "error_string": "error", "message": "message"}


def _injected_error(rule: ErrorRule, model: str, default: _HTTPError | None = None) -> _HTTPError:
    """The error a rule answers for a request naming ``model`` (``{model}`` in its message);
    ``default`` gives what the rule leaves unset (the unknown-model error it replaces)."""
    headers: dict[str, str] = {}
    retry_after = rule.retry_after
    if retry_after is None and rule.status == 429:
        retry_after = rule.retry_after_ms / 1000 if rule.retry_after_ms is not None else 1.0
    if retry_after is not None:
        headers["retry-after"] = _format_seconds(retry_after)
    if rule.retry_after_ms is not None:
        headers["retry-after-ms"] = _format_seconds(rule.retry_after_ms)
    code = rule.code or (default.code if default else None)
    error_type = rule.type
    message = rule.message.replace("{model}", model) if rule.message is not None else None
    if rule.quota and rule.status == 429:
        code = code or "insufficient_quota"
        error_type = error_type or "insufficient_quota"
        message = message or _QUOTA_MESSAGE
    if message is None:
        message = default.message if default else _DEFAULT_MESSAGES.get(rule.status)
    return _HTTPError(
        rule.status,
        message or f"Injected error {rule.status}.",
        error_type=error_type,
        code=code,
        param=rule.param,
        headers=headers,
        shape=rule.shape,
    )


def _error_response(
    provider: Provider, exc: _HTTPError, request_id: str, shape: str = "provider"
) -> Response:
    """The error as the provider writes it, or in another ``shape`` (``ERROR_SHAPES``) as
    self-hosted servers and gateways do; the error rule's own shape comes first."""
    shape = exc.shape or shape
    if shape == "text":
        body = exc.message.encode("utf-8")
        return Response(exc.status, body, dict(exc.headers), "text/plain; charset=utf-8")
    if shape in _STRING_SHAPES:
        return _json_response(exc.status, {_STRING_SHAPES[shape]: exc.message}, exc.headers)
    if shape == "detail_list":
        loc = ["body", *exc.param.split(".")] if exc.param else ["body"]
        item = {"type": exc.error_type or "value_error", "loc": loc, "msg": exc.message}
        return _json_response(exc.status, {"detail": [item]}, exc.headers)
    return _json_response(exc.status, _provider_error(provider, exc, request_id), exc.headers)


def _provider_error(provider: Provider, exc: _HTTPError, request_id: str) -> dict[str, Any]:
    """The error body in the provider's own format."""
    anthropic_type, openai_type, openai_code = _error_types(exc.status)
    if provider == "anthropic":
        return {
            "type": "error",
            "error": {"type": exc.error_type or anthropic_type, "message": exc.message},
            "request_id": request_id,
        }
    return {
        "error": {
            "message": exc.message,
            "type": exc.error_type or openai_type,
            "param": exc.param,
            "code": exc.code if exc.code is not None else openai_code,
        }
    }


def _anthropic_message(
    snapshot: str, text: str, prompt: _Prompt, verdict: dict[str, Any] | None = None
) -> Response:
    return _json_response(200, _anthropic_message_payload(snapshot, text, prompt, verdict))


def _anthropic_message_payload(
    snapshot: str, text: str, prompt: _Prompt, verdict: dict[str, Any] | None = None
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    stop_reason = "end_turn"
    if verdict is not None and prompt.tool is not None:  # the forced tool, called once
        content = [
            {"type": "tool_use", "id": _new_id("toolu_"), "name": prompt.tool, "input": verdict}
        ]
        stop_reason = "tool_use"
    payload = {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": snapshot,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": _tokens(prompt.input_chars),
            "output_tokens": _tokens(len(text)),
        },
    }
    return payload


def _openai_completion(
    snapshot: str,
    config: ModelConfig,
    text: str,
    prompt: _Prompt,
    verdict: dict[str, Any] | None = None,
) -> Response:
    return _json_response(200, _openai_completion_payload(snapshot, config, text, prompt, verdict))


def _openai_completion_payload(
    snapshot: str,
    config: ModelConfig,
    text: str,
    prompt: _Prompt,
    verdict: dict[str, Any] | None = None,
) -> dict[str, Any]:
    n = int(prompt.params.get("n", 1))
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if prompt.json_only and verdict is None and text == _JUDGE_REFUSAL:
        # Structured outputs: a model that declines answers in `refusal`, with no content.
        message = {"role": "assistant", "content": None, "refusal": text}
    prompt_tokens = _tokens(prompt.input_chars)
    completion_tokens = _tokens(len(text)) * n
    payload = {
        "id": "chatcmpl-" + secrets.token_hex(14),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": snapshot,
        "system_fingerprint": config.system_fingerprint,
        "choices": [
            {
                "index": index,
                "message": dict(message),
                "logprobs": None,
                "finish_reason": "stop",
            }
            for index in range(n)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return payload


def _anthropic_model(model_id: str, config: ModelConfig) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": config.display_name or model_id,
        "created_at": _iso(config.created_at or _DEFAULT_CREATED),
        "lifecycle": "deprecated" if config.retires_on is not None else "active",
        "retires_at": _iso(config.retires_on) if config.retires_on is not None else None,
    }


def _openai_model(model_id: str, config: ModelConfig) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": _unix(config.created_at or _DEFAULT_CREATED),
        "owned_by": "llmregress-local",
        "shutdown_date": config.retires_on.isoformat() if config.retires_on is not None else None,
    }


def _anthropic_page(entries: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    try:
        limit = max(1, min(1000, int(query.get("limit", "20"))))
    except ValueError:
        raise _HTTPError(400, "limit: Input should be a valid integer", param="limit") from None
    return anthropic_page(entries, query, limit)


# -------------------------------------------------------------------------------------------
# HTTP plumbing
# -------------------------------------------------------------------------------------------


_REASONS = {529: "Overloaded", 499: "Client Closed Request"}


class _HTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its :class:`LocalProviderServer` and its connections."""

    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        app: LocalProviderServer,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def close_connections(self) -> None:
        """Shut down every open keep-alive connection (their handler threads then exit)."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that disconnect; report real bugs."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # includes ConnectionError and TimeoutError
            return
        super().handle_error(request, client_address)  # pragma: no cover


class _Handler(BaseHTTPRequestHandler):
    """Reads one HTTP request, hands it to :meth:`LocalProviderServer.handle`, writes the reply."""

    protocol_version = "HTTP/1.1"
    server_version = "llmregress-local"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self._write(
                _json_response(400, {"error": {"type": "bad_request", "message": "bad body"}})
            )
            self.close_connection = True
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        app = self.server.app
        response = app.handle(self.command, self.path, headers, body, client_gone=self._client_gone)
        if self._client_gone():  # it gave up (a timeout, a cancelled call): nobody reads this
            if response.generated:
                app._lost_answer()
            self.close_connection = True
            return
        try:
            self._write(response, head_only=self.command == "HEAD")
        except OSError:
            if response.generated:
                app._lost_answer()
            raise

    def _client_gone(self) -> bool:
        """Whether the client has closed its end of the connection (a peek that never
        blocks: no data waiting means it is still there, an empty read that it left)."""
        connection = self.connection
        timeout = connection.gettimeout()
        try:
            connection.settimeout(0)
            return bool(connection.recv(1, socket.MSG_PEEK) == b"")
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                connection.settimeout(timeout)

    def _write(self, response: Response, *, head_only: bool = False) -> None:
        self.send_response(response.status, _REASONS.get(response.status))
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not head_only:
            self.wfile.write(response.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _dispatch
