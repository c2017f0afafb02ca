"""Model id classification: every row of the bundled data, and the patterns for other ids."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections import Counter
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from pytest_llmregress.models import (
    ModelInfo,
    bundled_lifecycle,
    classify,
    is_model_id,
    parse_model_id,
)
from pytest_llmregress.models.lifecycle import CSV_SURFACES

TODAY = date(2026, 11, 26)
ROOT = Path(__file__).resolve().parents[1]

ROWS = list(
    csv.DictReader(
        io.StringIO(
            resources.files("pytest_llmregress.models")
            .joinpath("lifecycle.csv")
            .read_text(encoding="utf-8")
        )
    )
)
ID_COUNTS = Counter(row["model_id"] for row in ROWS)
BY_KEY = {(CSV_SURFACES[row["provider"]][1], row["model_id"]): row for row in ROWS}
BY_ID = {row["model_id"]: row for row in ROWS}


def _date(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


def _expected_dates(row: dict[str, str]) -> tuple[date | None, date | None, str | None]:
    """The row's dates; a row with none takes its same-surface target's (documented rule)."""
    surface = CSV_SURFACES[row["provider"]][1]
    current = row
    while not current["deprecated_on"] and not current["retires_on"]:
        target = BY_KEY.get((surface, current["alias_of_or_resolves_to"]))
        if target is None or target is current:
            break
        current = target
    if current is row or not (current["deprecated_on"] or current["retires_on"]):
        return _date(row["deprecated_on"]), _date(row["retires_on"]), None
    return _date(current["deprecated_on"]), _date(current["retires_on"]), current["model_id"]


def _expected_base(row: dict[str, str]) -> str:
    """Bedrock/Vertex ids and alternate spellings: the first-party id their chain ends in."""
    current = row
    while current["alias_of_or_resolves_to"] and current["kind"] != "alias":
        nxt = BY_ID.get(current["alias_of_or_resolves_to"])
        if nxt is None or nxt is current:
            return current["alias_of_or_resolves_to"]
        current = nxt
    return current["model_id"]


def test_bundled_data_shape() -> None:
    assert len(ROWS) == 215
    assert len(bundled_lifecycle()) == 215
    assert all(row["source"] for row in ROWS)
    assert Counter(row["provider"] for row in ROWS) == {
        "openai": 87,
        "anthropic": 48,
        "google-gemini-api": 28,
        "anthropic-bedrock": 21,
        "google-vertex": 17,
        "anthropic-vertex": 14,
    }


@pytest.mark.parametrize("row", ROWS, ids=[f"{row['provider']}:{row['model_id']}" for row in ROWS])
def test_every_row_classifies_to_its_data(row: dict[str, str]) -> None:
    provider, surface = CSV_SURFACES[row["provider"]]
    info = classify(row["model_id"], surface=surface, today=TODAY)
    deprecated_on, retires_on, dates_from = _expected_dates(row)
    target = row["alias_of_or_resolves_to"] or None
    assert info.id == row["model_id"]
    assert info.provider == provider
    assert info.surface == surface
    assert info.kind == row["kind"]
    assert info.resolves_to == (target if row["kind"] == "alias" else None)
    if target is not None and row["kind"] != "alias":
        assert info.base_id == _expected_base(row)
    assert (info.deprecated_on, info.retires_on, info.dates_from) == (
        deprecated_on,
        retires_on,
        dates_from,
    )
    assert info.source == row["source"]
    assert info.known is True
    assert info.days_left == ((retires_on - TODAY).days if retires_on else None)
    if ID_COUNTS[row["model_id"]] == 1:
        # ids on one surface only need no surface hint
        assert classify(row["model_id"], today=TODAY) == info


def test_dates_inherited_only_by_rows_without_dates() -> None:
    inherited = {
        (row["provider"], row["model_id"]): _expected_dates(row)
        for row in ROWS
        if _expected_dates(row)[2] is not None
    }
    assert inherited == {
        ("anthropic", "claude-4-sonnet-20250514"): (
            date(2026, 4, 14),
            date(2026, 6, 15),
            "claude-sonnet-4-20250514",
        ),
        ("anthropic", "claude-4-opus-20250514"): (
            date(2026, 4, 14),
            date(2026, 6, 15),
            "claude-opus-4-20250514",
        ),
        ("anthropic", "claude-3-opus-latest"): (
            date(2025, 6, 30),
            date(2026, 1, 5),
            "claude-3-opus-20240229",
        ),
        ("google-vertex", "gemini-1.5-flash"): (None, date(2025, 9, 24), "gemini-1.5-flash-002"),
    }


def test_ids_on_several_surfaces_default_to_the_first_party_surface() -> None:
    assert classify("claude-sonnet-4-6").surface == "anthropic-api"
    assert classify("gemini-2.5-pro", today=TODAY).retires_on == date(2026, 12, 1)
    vertex = classify("vertex:gemini-2.5-pro", today=TODAY)
    assert (vertex.surface, vertex.retires_on, vertex.retired) == (
        "vertex",
        date(2026, 10, 20),
        True,
    )
    assert classify("gemini-2.5-pro", surface="vertex").retires_on == date(2026, 10, 20)


def test_patterns_agree_with_the_data_wherever_they_decide() -> None:
    disagreements = {}
    for row in ROWS:
        parsed = parse_model_id(row["model_id"], surface=CSV_SURFACES[row["provider"]][1])
        if parsed.kind != row["kind"]:
            disagreements[row["model_id"]] = (row["kind"], parsed.kind)
    # OpenAI undated ids need the data (or a dated sibling) to be told apart; ids with
    # "preview" in the name that are documented aliases of a dated preview stay "preview".
    assert {k for k, v in disagreements.items() if v != ("alias", "unknown")} == {
        "gpt-3.5-turbo-instruct",
        "text-davinci-003",
        "gpt-5-codex",
        "gpt-5.1-codex",
        "gpt-4-turbo-preview",
        "o1-preview",
        "computer-use-preview",
    }
    assert disagreements["gpt-5-codex"] == ("snapshot", "unknown")
    assert disagreements["o1-preview"] == ("alias", "preview")
    assert all(BY_ID[k]["provider"] == "openai" for k in disagreements)


# (id, provider, surface, kind, base_id)
PATTERN_CASES = [
    # Anthropic API
    ("claude-sonnet-4-5-20260101", "anthropic", "anthropic-api", "snapshot", None),
    ("claude-opus-6", "anthropic", "anthropic-api", "snapshot", None),
    ("claude-sonnet-4-7", "anthropic", "anthropic-api", "snapshot", None),
    ("claude-haiku-4-1", "anthropic", "anthropic-api", "alias", None),
    ("claude-sonnet-5-latest", "anthropic", "anthropic-api", "alias", None),
    ("claude-fable-preview", "anthropic", "anthropic-api", "preview", None),
    ("claude-instant-1", "anthropic", "anthropic-api", "alias", None),
    ("claude-2", "anthropic", "anthropic-api", "alias", None),
    ("claude-2.2", "anthropic", "anthropic-api", "snapshot", None),
    ("claude-code", "anthropic", "anthropic-api", "unknown", None),
    ("anthropic:claude-opus-6", "anthropic", "anthropic-api", "snapshot", "claude-opus-6"),
    ("anthropic/claude-opus-6", "anthropic", "anthropic-api", "snapshot", "claude-opus-6"),
    # Bedrock
    (
        "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
        "anthropic",
        "bedrock",
        "snapshot",
        "claude-haiku-4-5-20251001",
    ),
    (
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-7",
        "anthropic",
        "bedrock",
        "snapshot",
        "claude-opus-4-7",
    ),
    (
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-6-v1",
        "anthropic",
        "bedrock",
        "snapshot",
        "claude-opus-6",
    ),
    ("bedrock:amazon.nova-pro-v1:0", None, "bedrock", "unknown", "amazon.nova-pro-v1:0"),
    # Vertex (Claude)
    ("claude-opus-4-7@20260416", "anthropic", "vertex", "snapshot", "claude-opus-4-7-20260416"),
    ("vertex_ai/claude-opus-4-6@default", "anthropic", "vertex", "alias", "claude-opus-4-6"),
    ("vertex:claude-3-5-sonnet", "anthropic", "vertex", "alias", "claude-3-5-sonnet"),
    ("vertex:claude-sonnet-4-5", "anthropic", "vertex", "alias", "claude-sonnet-4-5"),
    # OpenAI
    ("gpt-5.5-2026-12-01", "openai", "openai-api", "snapshot", None),
    ("o5-mini-2027-01-01", "openai", "openai-api", "snapshot", None),
    ("gpt-4-0409", "openai", "openai-api", "snapshot", None),
    ("gpt-3.5-turbo-16k-0914", "openai", "openai-api", "snapshot", None),
    ("o3-1215", "openai", "openai-api", "unknown", None),  # not a date: not gpt-4/3.5
    ("gpt-6-chat-latest", "openai", "openai-api", "alias", None),
    ("gpt-6-preview", "openai", "openai-api", "preview", None),
    ("gpt-4o-mini-realtime-preview-2025-06-01", "openai", "openai-api", "preview", None),
    ("gpt-6", "openai", "openai-api", "unknown", None),
    ("openai:gpt-6-2027-02-02", "openai", "openai-api", "snapshot", "gpt-6-2027-02-02"),
    ("azure:gpt-4o", "openai", "azure", "unknown", "gpt-4o"),
    (
        "ft:gpt-4.1-2025-04-14:acme:support:AbC123",
        "openai",
        "openai-api",
        "fine-tune",
        "gpt-4.1-2025-04-14",
    ),
    # Google
    ("gemini-3.5-pro", "google", "gemini-api", "snapshot", None),
    ("gemini-1.0-pro", "google", "gemini-api", "alias", None),
    ("gemini-1.5-pro-003", "google", "gemini-api", "snapshot", None),
    ("gemini-ultra-latest", "google", "gemini-api", "alias", None),
    ("gemini-2.5-pro-preview-11-2026", "google", "gemini-api", "preview", None),
    ("gemini-exp-1206", "google", "gemini-api", "preview", None),
    ("gemini-2.0-flash-thinking-exp-01-21", "google", "gemini-api", "preview", None),
    ("gemini-live-3.0-flash-native-audio", "google", "gemini-api", "snapshot", None),
    ("gemini-cli", "google", "gemini-api", "unknown", None),
    ("models/gemini-3.5-flash", "google", "gemini-api", "snapshot", "gemini-3.5-flash"),
    (
        "projects/p/locations/us-central1/publishers/google/models/gemini-4-flash",
        "google",
        "vertex",
        "snapshot",
        "gemini-4-flash",
    ),
    ("google-vertex:gemini-4-flash", "google", "vertex", "snapshot", "gemini-4-flash"),
    # Mistral
    ("mistral-large-2411", "mistral", "mistral-api", "snapshot", None),
    ("codestral-2501", "mistral", "mistral-api", "snapshot", None),
    ("open-mistral-nemo-2407", "mistral", "mistral-api", "snapshot", None),
    ("mistral-embed", "mistral", "mistral-api", "unknown", None),
    ("mistral/mistral-small-2503", "mistral", "mistral-api", "snapshot", "mistral-small-2503"),
    # Nobody's
    ("hello-world", None, None, "unknown", None),
    ("openai:my-local-model", None, None, "unknown", "my-local-model"),
]


@pytest.mark.parametrize(("model_id", "provider", "surface", "kind", "base_id"), PATTERN_CASES)
def test_pattern_classification_of_ids_not_in_the_data(
    model_id: str, provider: str | None, surface: str | None, kind: str, base_id: str | None
) -> None:
    assert model_id not in BY_ID
    info = classify(model_id, today=TODAY)
    assert (info.provider, info.surface, info.kind) == (provider, surface, kind)
    assert info.base_id == (base_id or model_id)
    assert info.known is False
    assert info.resolves_to is None


def test_surface_decides_the_dates() -> None:
    # gemini-3.5-flash is only in the Vertex data; the Gemini API resource name must not
    # borrow Vertex dates, nor Bedrock ids the Claude API's.
    assert classify("models/gemini-3.5-flash").source is None
    assert classify("gemini-3.5-flash").surface == "vertex"
    sonnet_4 = classify("anthropic.claude-3-5-sonnet-20241022-v2:0", today=TODAY)
    assert (sonnet_4.retires_on, sonnet_4.retired) == (None, False)
    assert classify("claude-3-5-sonnet-20241022", today=TODAY).retired is True


def test_bedrock_profile_and_arn_take_the_base_model_dates() -> None:
    info = classify("us.anthropic.claude-sonnet-4-20250514-v1:0", today=TODAY)
    assert info == ModelInfo(
        id="us.anthropic.claude-sonnet-4-20250514-v1:0",
        provider="anthropic",
        surface="bedrock",
        kind="snapshot",
        resolves_to=None,
        base_id="claude-sonnet-4-20250514",
        deprecated_on=None,
        retires_on=date(2026, 10, 14),
        source=BY_ID["anthropic.claude-sonnet-4-20250514-v1:0"]["source"],
        known=False,
        dates_from="anthropic.claude-sonnet-4-20250514-v1:0",
        days_left=-43,
    )
    arn = classify(
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-4-1-20250805-v1:0",
        today=TODAY,
    )
    assert (arn.retires_on, arn.known, arn.base_id) == (
        date(2027, 1, 8),
        True,
        "claude-opus-4-1-20250805",
    )


def test_fine_tune_inherits_its_base_lifecycle() -> None:
    info = classify("ft:gpt-4o-mini-2024-07-18:acme::abc123", today=TODAY)
    assert (info.kind, info.base_id, info.dates_from) == (
        "fine-tune",
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-mini-2024-07-18",
    )
    assert (info.deprecated_on, info.retires_on, info.days_left) == (
        date(2026, 10, 14),
        date(2027, 1, 14),
        49,
    )
    assert info.pinned is True
    assert classify("ft:gpt-9-2030-01-01:acme::x").retires_on is None


def test_explicit_prefix_names_the_provider_and_is_stripped() -> None:
    info = classify("openai:gpt-5.5-2026-04-23", today=TODAY)
    plain = classify("gpt-5.5-2026-04-23", today=TODAY)
    assert info.id == "openai:gpt-5.5-2026-04-23"
    assert (info.provider, info.base_id, info.known, info.kind) == (
        "openai",
        "gpt-5.5-2026-04-23",
        True,
        "snapshot",
    )
    assert {**info.to_dict(), "id": plain.id} == plain.to_dict()


def test_undated_openai_id_with_a_dated_sibling_is_an_alias() -> None:
    assert classify("gpt-7").kind == "unknown"
    data = bundled_lifecycle().with_overrides([{"id": "gpt-7-2027-03-01"}])
    assert classify("gpt-7", data=data).kind == "alias"
    assert classify("gpt-7-mini", data=data).kind == "unknown"
    assert data.is_model_id("gpt-7") is True
    assert is_model_id("gpt-7") is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("claude-sonnet-4-6", True),
        ("o3", True),
        ("gpt-5.5-2026-04-23", True),
        ("anthropic:claude-opus-6", True),
        ("us.anthropic.claude-opus-4-7", True),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", True),
        ("gemini-flash-latest", True),
        ("claude-code", False),
        ("gpt-engineer", False),
        ("gemini-cli", False),
        ("model", False),
        ("o", False),
        ("gpt-4o is great", False),
        ("azure:my-deployment", False),
        ("", False),
    ],
)
def test_is_model_id(text: str, expected: bool) -> None:
    assert is_model_id(text) is expected


def test_model_info_retired_and_to_dict() -> None:
    info = classify("claude-sonnet-4-5-20250929", today=date(2026, 11, 30))
    assert (info.days_left, info.retired) == (0, True)
    assert classify("claude-sonnet-4-5-20250929", today=date(2026, 11, 29)).retired is False
    data = info.to_dict()
    assert (data["retires_on"], data["deprecated_on"], data["retired"], data["kind"]) == (
        "2026-11-30",
        "2026-09-30",
        True,
        "snapshot",
    )
    unknown = classify("gpt-6")
    assert (unknown.days_left, unknown.retired, unknown.pinned) == (None, False, False)


def test_import_is_light() -> None:
    code = (
        "import sys, pytest_llmregress.models as m; m.classify('gpt-4o'); "
        "print(sorted({n.split('.')[0] for n in sys.modules} & "
        "{'openai', 'anthropic', 'yaml', 'pytest', 'httpx', 'pydantic'}))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.strip() == "[]"


# -- identity across vendors --------------------------------------------------------------

# (as written, the same model without a transport prefix)
TRANSPORTED = [
    ("openai:gemini-2.5-flash", "gemini-2.5-flash"),  # Google's OpenAI-compatible endpoint
    ("openai/gemini-2.5-pro", "gemini-2.5-pro"),  # LiteLLM spelling
    ("openai:google/gemini-2.0-flash", "gemini-2.0-flash"),  # Vertex / OpenRouter spelling
    ("openai:claude-sonnet-4-20250514", "claude-sonnet-4-20250514"),
    ("openai:claude-3-opus-latest", "claude-3-opus-latest"),
    ("anthropic:gpt-4o", "gpt-4o"),
    ("openai:mistral-large-latest", "mistral-large-latest"),
]


@pytest.mark.parametrize(("written", "bare"), TRANSPORTED)
def test_transport_prefix_keeps_the_vendor_of_the_id(written: str, bare: str) -> None:
    info = classify(written, today=TODAY)
    plain = classify(bare, today=TODAY)
    assert info.id == written
    assert {**info.to_dict(), "id": bare} == plain.to_dict()
    assert parse_model_id(written).transport == written.split(":")[0].split("/")[0]
    assert parse_model_id(bare).transport is None


def test_gemini_through_an_openai_endpoint_gets_google_dates() -> None:
    info = classify("openai:gemini-2.5-flash", today=TODAY)
    assert (info.provider, info.surface, info.kind, info.known) == (
        "google",
        "gemini-api",
        "snapshot",
        True,
    )
    assert (info.retires_on, info.days_left) == (date(2026, 12, 1), 5)
    assert info.source == BY_KEY[("gemini-api", "gemini-2.5-flash")]["source"]
    # a surface prefix still decides the surface
    assert classify("vertex:gemini-2.5-flash").retires_on == date(2026, 10, 20)
    # an alias behind the transport keeps its documented target
    alias = classify("openai:gemini-2.0-flash", today=TODAY)
    assert (alias.kind, alias.resolves_to, alias.retired) == ("alias", "gemini-2.0-flash-001", True)


def test_transport_prefix_alone_names_no_vendor() -> None:
    parsed = parse_model_id("openai:llama3.1:8b")
    assert (parsed.transport, parsed.provider, parsed.surface, parsed.name) == (
        "openai",
        None,
        None,
        "llama3.1:8b",
    )
    info = classify("openai:llama3.1:8b")
    assert (info.provider, info.surface, info.kind) == (None, None, "unknown")


@pytest.mark.parametrize(
    ("model_id", "provider", "known"),
    [
        ("claude-3-5-sonnet-latest", "anthropic", True),
        ("claude-opus-9-latest", "anthropic", False),
        ("gemini-1.5-pro-latest", "google", True),
        ("gemini-flash-latest", "google", True),
        ("gpt-4o-latest", "openai", False),
        ("chatgpt-4o-latest", "openai", True),
        ("mistral-large-latest", "mistral", False),
        ("codestral-latest", "mistral", False),
        ("openai:gemini-3-pro-latest", "google", False),
        ("llama-4-maverick-latest", None, False),
        ("openai:qwen-max-latest", None, False),
    ],
)
def test_latest_is_an_alias_for_every_vendor(
    model_id: str, provider: str | None, known: bool
) -> None:
    info = classify(model_id, today=TODAY)
    assert (info.kind, info.provider, info.known) == ("alias", provider, known)
    assert parse_model_id(model_id).kind == "alias"
    assert info.pinned is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mistral-large-latest", True),
        ("mistral-large-2411", True),
        ("openai:gemini-2.5-flash", True),
        ("openai:llama-4-latest", True),  # the transport prefix says it is a model
        ("llama-4-latest", False),  # a word ending in -latest is not enough ...
        ("ubuntu-latest", False),  # ... as in a CI workflow's runs-on
        ("openai:llama3", False),
        ("mistral-embed", False),
    ],
)
def test_is_model_id_across_vendors(text: str, expected: bool) -> None:
    assert is_model_id(text) is expected
