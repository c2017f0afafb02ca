"""Lifecycle data: findings, overrides, override files, refresh from a models endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.models import (
    LIFECYCLE_DATA_AS_OF,
    LifecycleData,
    LifecycleError,
    LifecycleFinding,
    bundled_lifecycle,
    check,
    classify,
    load_overrides_file,
    parse_override,
    refresh_from_openai_models,
)
from pytest_llmregress.models.lifecycle import dump_overrides

TODAY = date(2026, 11, 26)


def test_bundled_data_is_loaded_once() -> None:
    data = bundled_lifecycle()
    assert data is bundled_lifecycle() is LifecycleData.bundled()
    assert data.as_of == LIFECYCLE_DATA_AS_OF == date(2026, 11, 26)
    assert data.describe() == "lifecycle data as of 2026-11-26"
    assert data.overrides == ()
    assert "claude-sonnet-4-6" in data
    assert "claude-opus-6" not in data


def test_retired_model_is_an_error() -> None:
    assert check("claude-3-haiku-20240307", "candidate", TODAY) == [
        LifecycleFinding(
            level="error",
            code="retired",
            model_id="claude-3-haiku-20240307",
            role="candidate",
            message="candidate: claude-3-haiku-20240307 retired on 2026-04-20; "
            "every request to it fails (HTTP 404)",
            retires_on=date(2026, 4, 20),
            days_left=-220,
        )
    ]


def test_retirement_day_itself_is_retired() -> None:
    findings = check("claude-sonnet-4-5-20250929", None, date(2026, 11, 30))
    assert [(f.level, f.code, f.days_left) for f in findings] == [("error", "retired", 0)]


def test_retiring_within_the_window_is_a_warning_with_date_and_days() -> None:
    findings = check("claude-sonnet-4-5-20250929", "judge", TODAY)
    assert [(f.level, f.code, f.message) for f in findings] == [
        (
            "warning",
            "retiring",
            "judge: claude-sonnet-4-5-20250929 retires on 2026-11-30 (in 4 days); "
            "deprecated since 2026-09-30; migrate before then",
        )
    ]


def test_warning_window_edges() -> None:
    retires = date(2027, 1, 14)  # gpt-4o-2024-08-06
    at_edge = check("gpt-4o-2024-08-06", None, retires - timedelta(days=60))
    past_edge = check("gpt-4o-2024-08-06", None, retires - timedelta(days=61))
    assert [(f.code, f.message) for f in at_edge] == [
        (
            "retiring",
            "gpt-4o-2024-08-06 retires on 2027-01-14 (in 60 days); "
            "deprecated since 2026-10-14; migrate before then",
        )
    ]
    assert [(f.code, f.message) for f in past_edge] == [
        (
            "deprecated",
            "gpt-4o-2024-08-06 is deprecated since 2026-10-14; retires on 2027-01-14 (in 61 days)",
        )
    ]
    assert check("gpt-4o-2024-08-06", None, retires - timedelta(days=61), warning_days=90)[
        0
    ].code == ("retiring")
    one_day = check("gpt-4o-2024-08-06", None, retires - timedelta(days=1))
    assert "(in 1 day)" in one_day[0].message


def test_deprecated_without_retirement_date() -> None:
    data = bundled_lifecycle().with_overrides(
        [{"id": "claude-opus-4-7", "deprecated_on": "2026-11-01"}]
    )
    assert [(f.level, f.message) for f in data.check("claude-opus-4-7", "chat", TODAY)] == [
        (
            "warning",
            "chat: claude-opus-4-7 is deprecated since 2026-11-01; "
            "no retirement date is published yet",
        )
    ]
    # a deprecation announced for a future date is not yet a finding
    later = bundled_lifecycle().with_overrides(
        [{"id": "claude-opus-4-7", "deprecated_on": "2026-12-01"}]
    )
    assert later.check("claude-opus-4-7", "chat", TODAY) == []


def test_alias_warns_and_require_pinned_makes_it_an_error() -> None:
    findings = check("gpt-5.5", "judge", TODAY)
    assert [(f.level, f.code, f.message) for f in findings] == [
        (
            "warning",
            "alias",
            "judge: alias gpt-5.5 currently points to gpt-5.5-2026-04-23; pin a dated snapshot",
        )
    ]
    pinned = check("gpt-5.5", "judge", TODAY, require_pinned=True)
    assert [(f.level, f.code) for f in pinned] == [("error", "alias")]


def test_alias_without_documented_target() -> None:
    assert [f.message for f in check("gemini-flash-latest", None, TODAY)] == [
        "alias gemini-flash-latest can be re-pointed by the provider at any time; "
        "pin a dated snapshot"
    ]


def test_lifecycle_rules_come_from_the_id_not_the_transport() -> None:
    # Google's gemini-2.5-flash through an OpenAI-compatible endpoint: Google's date
    assert [
        (f.level, f.code, f.message) for f in check("openai:gemini-2.5-flash", "judge", TODAY)
    ] == [
        (
            "warning",
            "retiring",
            "judge: openai:gemini-2.5-flash retires on 2026-12-01 (in 5 days); migrate before then",
        )
    ]
    assert [f.code for f in check("openai:gemini-2.5-flash", None, date(2026, 12, 1))] == [
        "retired"
    ]
    # Anthropic's dated snapshot through an OpenAI-compatible endpoint: Anthropic's date
    assert [f.code for f in check("openai:claude-3-haiku-20240307", None, TODAY)] == ["retired"]
    # an override for the bare id applies to the prefixed one, and the other way round
    bare = bundled_lifecycle().with_overrides(
        [{"id": "gemini-2.5-flash", "retires_on": "2027-03-01"}]
    )
    assert bare.classify("openai:gemini-2.5-flash").retires_on == date(2027, 3, 1)
    prefixed = bundled_lifecycle().with_overrides(
        [{"id": "openai:gemini-2.5-flash", "retires_on": "2027-03-01"}]
    )
    assert (
        prefixed.classify("gemini-2.5-flash").to_dict()
        == bare.classify("gemini-2.5-flash").to_dict()
    )
    assert len(prefixed) == len(bare) == len(bundled_lifecycle())  # no "openai-api" copy


@pytest.mark.parametrize(
    "model_id",
    ["claude-3-5-sonnet-latest", "gpt-4o-latest", "mistral-large-latest", "llama-4-latest"],
)
def test_latest_ids_warn_as_aliases_and_require_pinned_refuses_them(model_id: str) -> None:
    assert "alias" in [f.code for f in check(model_id, None, TODAY)]
    pinned = check(model_id, None, TODAY, require_pinned=True)
    assert ("error", "alias") in [(f.level, f.code) for f in pinned]


def test_retired_alias_gets_both_findings() -> None:
    findings = check("claude-sonnet-4-0", "candidate", TODAY)
    assert [(f.level, f.code) for f in findings] == [("error", "retired"), ("warning", "alias")]


def test_preview() -> None:
    findings = check("gemini-3-flash-preview", "fallback", TODAY, require_pinned=True)
    assert [(f.level, f.code, f.message) for f in findings] == [
        (
            "error",
            "preview",
            "fallback: preview gemini-3-flash-preview may be retired at short notice; "
            "pin a stable snapshot",
        )
    ]


def test_pinned_snapshots_without_dates_have_no_findings() -> None:
    assert check("claude-sonnet-4-6", "candidate", TODAY, require_pinned=True) == []
    assert check("gpt-5.5-2026-04-23", "judge", TODAY, require_pinned=True) == []


def test_unknown_kind_only_matters_when_pinning_is_required() -> None:
    assert check("gpt-6", None, TODAY) == []
    assert [(f.level, f.code) for f in check("gpt-6", None, TODAY, require_pinned=True)] == [
        ("warning", "unknown-kind")
    ]


def test_inherited_dates_are_explained() -> None:
    [finding] = check("us.anthropic.claude-sonnet-4-20250514-v1:0", None, TODAY)
    assert finding.message == (
        "us.anthropic.claude-sonnet-4-20250514-v1:0 retired on 2026-10-14 "
        "(the date of anthropic.claude-sonnet-4-20250514-v1:0); "
        "every request to it fails (HTTP 404)"
    )
    [ft] = check("ft:gpt-4o-mini-2024-07-18:acme::x1", None, TODAY)
    assert ft.message == (
        "ft:gpt-4o-mini-2024-07-18:acme::x1 retires on 2027-01-14 "
        "(in 49 days; its base model gpt-4o-mini-2024-07-18); "
        "deprecated since 2026-10-14; migrate before then"
    )


def test_finding_serialisation() -> None:
    [finding] = check("claude-3-haiku-20240307", None, TODAY)
    assert str(finding) == (
        "error: claude-3-haiku-20240307 retired on 2026-04-20; every request to it fails (HTTP 404)"
    )
    assert finding.to_dict()["retires_on"] == "2026-04-20"


# -- overrides ----------------------------------------------------------------------------


def test_override_changes_only_the_given_fields_and_leaves_the_bundle_alone() -> None:
    data = bundled_lifecycle().with_overrides(
        [{"id": "claude-sonnet-4-6", "retires_on": "2027-02-17", "source": "team email"}]
    )
    info = data.classify("claude-sonnet-4-6", today=TODAY)
    assert (info.kind, info.retires_on, info.days_left, info.source) == (
        "snapshot",
        date(2027, 2, 17),
        83,
        "team email",
    )
    assert classify("claude-sonnet-4-6").retires_on is None
    assert data.describe() == "lifecycle data as of 2026-11-26 + 1 override"
    # Vertex has its own row for the same id: untouched
    assert data.classify("vertex:claude-sonnet-4-6").retires_on is None


def test_override_adds_new_ids_and_can_clear_a_date() -> None:
    data = bundled_lifecycle().with_overrides(
        [
            {"id": "claude-opus-6", "retires_on": date(2028, 1, 1)},
            {"id": "my-router", "kind": "alias", "resolves_to": "claude-opus-6"},
            {"id": "claude-sonnet-4-5-20250929", "retires_on": ""},
        ]
    )
    new = data.classify("claude-opus-6", today=TODAY)
    assert (new.known, new.kind, new.retires_on, new.source) == (
        True,
        "snapshot",
        date(2028, 1, 1),
        "project override",
    )
    router = data.classify("my-router")
    assert (router.kind, router.resolves_to, router.provider, router.surface) == (
        "alias",
        "claude-opus-6",
        None,
        None,
    )
    cleared = data.classify("claude-sonnet-4-5-20250929")
    assert (cleared.deprecated_on, cleared.retires_on) == (date(2026, 9, 30), None)
    assert len(data) == len(bundled_lifecycle()) + 2


def test_override_for_another_surface() -> None:
    data = bundled_lifecycle().with_overrides(
        [{"id": "gemini-2.5-pro", "surface": "vertex", "retires_on": "2027-03-01"}]
    )
    assert data.classify("vertex:gemini-2.5-pro").retires_on == date(2027, 3, 1)
    assert data.classify("gemini-2.5-pro").retires_on == date(2026, 12, 1)


def test_later_overrides_win() -> None:
    data = bundled_lifecycle().with_overrides(
        [{"id": "o3", "retires_on": "2027-01-01"}, {"id": "o3", "retires_on": "2027-02-01"}]
    )
    assert data.classify("o3").retires_on == date(2027, 2, 1)
    again = data.with_overrides([{"id": "o3", "retires_on": "2027-03-01"}])
    assert again.classify("o3").retires_on == date(2027, 3, 1)
    assert len(again.overrides) == 3


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"retires_on": "2027-01-01"}, "cfg[0]: missing required key 'id'"),
        ({"id": ""}, "cfg[0].id: expected a non-empty string, got ''"),
        (
            {"id": "x", "retire_on": "2027-01-01"},
            "cfg[0].retire_on: unknown key (allowed: id, surface, kind, resolves_to, "
            "digest, version, deprecated_on, retires_on, source)",
        ),
        (
            {"id": "x", "retires_on": "2027-02-30"},
            "cfg[0].retires_on: invalid date '2027-02-30': day is out of range for month",
        ),
        (
            {"id": "x", "retires_on": "next year"},
            "cfg[0].retires_on: expected a date YYYY-MM-DD, got 'next year'",
        ),
        (
            {"id": "x", "kind": "stable"},
            "cfg[0].kind: expected one of snapshot, alias, preview, fine-tune, unknown, "
            "got 'stable'",
        ),
        (
            {"id": "x", "surface": "aws"},
            "cfg[0].surface: expected one of anthropic-api, openai-api, gemini-api, "
            "mistral-api, bedrock, vertex, azure, got 'aws'",
        ),
        ({"id": "x", "resolves_to": 3}, "cfg[0].resolves_to: expected a string, got int 3"),
    ],
)
def test_bad_override_entries(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(LifecycleError) as excinfo:
        bundled_lifecycle().with_overrides([entry], where="cfg")
    assert str(excinfo.value) == message


def test_override_files_round_trip(tmp_path: Path) -> None:
    entries = [
        {"id": "gpt-x-2025-01-01", "surface": "openai-api", "retires_on": "2027-01-14"},
        {"id": "claude-opus-4-7", "deprecated_on": "2026-11-20", "source": 'say "hi"'},
    ]
    for name in ("o.toml", "o.json"):
        path = tmp_path / name
        dump_overrides(entries, path, header="generated\nfor a test")
        loaded = load_overrides_file(path)
        assert [o.to_dict() for o in loaded] == entries
    toml_text = (tmp_path / "o.toml").read_text()
    assert toml_text.splitlines()[:5] == [
        "# generated",
        "# for a test",
        "",
        "[[lifecycle]]",
        'id = "gpt-x-2025-01-01"',
    ]
    assert "retires_on = 2027-01-14" in toml_text
    (tmp_path / "list.json").write_text(json.dumps([{"id": "o3", "retires_on": "2027-01-01"}]))
    assert load_overrides_file(tmp_path / "list.json") == [
        parse_override({"id": "o3", "retires_on": "2027-01-01"})
    ]


def test_override_files_write_any_text_as_valid_toml(tmp_path: Path) -> None:
    # Any text round-trips: tomli-w escapes control characters (DEL too, as TOML requires)
    # and writes other characters as they are.
    source = 'café 🚨 "quoted" \\ tab\tnew\nline bell\x07 del\x7f'
    entries = [{"id": "o3", "retires_on": "", "source": source}]
    path = tmp_path / "o.toml"
    dump_overrides(entries, path)
    [loaded] = load_overrides_file(path)
    assert loaded.to_dict()["source"] == source
    assert path.read_text(encoding="utf-8").splitlines()[:3] == [
        "[[lifecycle]]",
        'id = "o3"',
        'retires_on = ""',
    ]
    assert 'source = "café 🚨 \\"quoted\\" ' in path.read_text(encoding="utf-8")


def test_bad_override_file_names_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[lifecycle]]\nid = "o3"\nretires = 2027-01-01\n')
    with pytest.raises(LifecycleError) as excinfo:
        load_overrides_file(path)
    assert str(excinfo.value) == (
        f"{path}: lifecycle[0].retires: unknown key (allowed: id, surface, kind, resolves_to, "
        "digest, version, deprecated_on, retires_on, source)"
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(LifecycleError, match=r"broken\.json: invalid JSON"):
        load_overrides_file(broken)


# -- refresh from a models endpoint --------------------------------------------------------


def test_refresh_from_openai_models(make_server: Callable[[dict[str, Any]], Any]) -> None:
    server = make_server(
        {
            "models": {
                "gpt-x-2025-01-01": {"retires_on": "2027-01-14"},
                "gpt-y-2025-02-02": {},
                "gpt-z-2024-03-03": {"retires_on": "2026-12-24"},
            }
        }
    )
    entries = refresh_from_openai_models(server.openai_base_url, "sk-test", today=TODAY)
    source = f"GET {server.openai_base_url}/models shutdown_date (fetched 2026-11-26)"
    assert entries == [
        {
            "id": "gpt-x-2025-01-01",
            "surface": "openai-api",
            "retires_on": "2027-01-14",
            "source": source,
        },
        {
            "id": "gpt-z-2024-03-03",
            "surface": "openai-api",
            "retires_on": "2026-12-24",
            "source": source,
        },
    ]
    data = bundled_lifecycle().with_overrides(entries)
    assert [f.message for f in data.check("gpt-z-2024-03-03", "judge", TODAY)] == [
        "judge: gpt-z-2024-03-03 retires on 2026-12-24 (in 28 days); migrate before then"
    ]


def test_refresh_from_another_vendors_openai_endpoint(
    make_server: Callable[[dict[str, Any]], Any],
) -> None:
    # Google's OpenAI-compatible endpoint lists Gemini ids: their dates are Google's, on the
    # surface where classify looks them up (not on "openai-api", where nothing would read them)
    server = make_server(
        {
            "models": {
                "gemini-2.5-flash": {"retires_on": "2027-02-02"},
                "gpt-x-2025-01-01": {"retires_on": "2027-01-14"},
            }
        }
    )
    entries = refresh_from_openai_models(server.openai_base_url, "sk-test", today=TODAY)
    assert [(e["id"], e.get("surface")) for e in entries] == [
        ("gemini-2.5-flash", None),
        ("gpt-x-2025-01-01", "openai-api"),
    ]
    data = bundled_lifecycle().with_overrides(entries)
    for model_id in ("gemini-2.5-flash", "openai:gemini-2.5-flash"):
        info = data.classify(model_id, today=TODAY)
        assert (info.surface, info.retires_on) == ("gemini-api", date(2027, 2, 2))
    assert data.classify("vertex:gemini-2.5-flash").retires_on == date(2026, 10, 20)


# -- the plugin ---------------------------------------------------------------------------


def test_plugin_applies_the_vendor_rules_of_the_id(
    pytester: pytest.Pytester,
    make_server: Callable[[dict[str, Any]], Any],
    provider_env: Callable[[Any], None],
) -> None:
    (pytester.path / "golden_cases").mkdir()
    (pytester.path / "golden_cases" / "qa.jsonl").write_text(
        json.dumps({"id": "c1", "user": "hi", "reference": "hello"}) + "\n"
    )
    server = make_server({"models": {"gpt-5.5-2026-04-23": {"judge": True}}})
    provider_env(server)
    # Google retired gemini-2.0-flash on 2026-06-01: an OpenAI-compatible endpoint does not
    # make it OpenAI's (whose data does not know it)
    retired = pytester.runpytest(
        "--llm-model=openai:gemini-2.0-flash", "--llm-judge-model=gpt-5.5-2026-04-23"
    )
    assert retired.ret == pytest.ExitCode.USAGE_ERROR
    output = pytest.LineMatcher((retired.stdout.str() + retired.stderr.str()).splitlines())
    output.fnmatch_lines(["*candidate: gemini-2.0-flash retired on 2026-06-01*"])
    # a -latest id of any vendor is an alias, refused with --llm-require-pinned
    latest = pytester.runpytest(
        "--llm-model=openai:mistral-large-latest",
        "--llm-judge-model=gpt-5.5-2026-04-23",
        "--llm-require-pinned",
    )
    assert latest.ret == pytest.ExitCode.USAGE_ERROR
    output = pytest.LineMatcher((latest.stdout.str() + latest.stderr.str()).splitlines())
    output.fnmatch_lines(["*alias mistral-large-latest can be re-pointed*"])
    assert server.requests == []
