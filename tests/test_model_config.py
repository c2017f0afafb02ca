"""The model config: discovery, roles, @role references, lifecycle overrides, validation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.models import (
    ModelConfig,
    ModelConfigError,
    ModelRole,
    find_config_file,
    load_model_config,
)

TODAY = date(2026, 11, 26)
MODELS_DIR = Path(__file__).resolve().parents[1] / "pytest_llmregress" / "models"

PYPROJECT = """\
[project]
name = "app"

[tool.llmregress.models.chat]
id = "claude-sonnet-4-6"
fallbacks = ["gpt-5.5-2026-04-23"]
retires_on = "2027-02-17"

[tool.llmregress.models.judge]
id = "gpt-5.5-2026-04-23"

[[tool.llmregress.lifecycle]]
id = "gpt-5.5-2026-04-23"
retires_on = 2027-04-23
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_load_from_pyproject_searching_upward(tmp_path: Path) -> None:
    pyproject = write(tmp_path / "pyproject.toml", PYPROJECT)
    nested = tmp_path / "src" / "app"
    nested.mkdir(parents=True)
    config = load_model_config(nested)
    assert config.path == pyproject
    assert dict(config.roles) == {
        "chat": ModelRole(
            name="chat",
            id="claude-sonnet-4-6",
            fallbacks=("gpt-5.5-2026-04-23",),
            retires_on=date(2027, 2, 17),
        ),
        "judge": ModelRole(name="judge", id="gpt-5.5-2026-04-23"),
    }
    assert config.roles["chat"].chain == ("claude-sonnet-4-6", "gpt-5.5-2026-04-23")
    assert config.model_ids() == ("claude-sonnet-4-6", "gpt-5.5-2026-04-23")
    assert config.resolve("@chat") == "claude-sonnet-4-6"
    assert config.resolve("@judge") == "gpt-5.5-2026-04-23"
    assert config.resolve(" gpt-4.1-2025-04-14 ") == "gpt-4.1-2025-04-14"


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_model_config(path=write(tmp_path / "pyproject.toml", PYPROJECT))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.path = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.roles["x"] = config.roles["chat"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.roles["chat"].id = "gpt-4o"  # type: ignore[misc]


def test_role_retires_on_and_lifecycle_entries_override_the_data(tmp_path: Path) -> None:
    config = load_model_config(path=write(tmp_path / "pyproject.toml", PYPROJECT))
    data = config.lifecycle()
    chat = data.classify("claude-sonnet-4-6", today=TODAY)
    judge = data.classify("gpt-5.5-2026-04-23", today=TODAY)
    assert (chat.retires_on, chat.days_left, chat.source) == (
        date(2027, 2, 17),
        83,
        f"{tmp_path / 'pyproject.toml'}: tool.llmregress.models.chat.retires_on",
    )
    assert (judge.retires_on, judge.source) == (
        date(2027, 4, 23),
        f"{tmp_path / 'pyproject.toml'}: tool.llmregress.lifecycle[0]",
    )
    assert config.check(TODAY) == []
    soon = [f.message for f in config.check(date(2027, 1, 1))]
    assert soon == [
        "chat: claude-sonnet-4-6 retires on 2027-02-17 (in 47 days); migrate before then"
    ]
    later = [f.message for f in config.check(date(2027, 3, 1))]
    assert later == [
        "chat: claude-sonnet-4-6 retired on 2027-02-17; every request to it fails (HTTP 404)",
        "chat fallback 1: gpt-5.5-2026-04-23 retires on 2027-04-23 (in 53 days); "
        "migrate before then",
        "judge: gpt-5.5-2026-04-23 retires on 2027-04-23 (in 53 days); migrate before then",
    ]


def test_llmregress_toml_wins_over_pyproject_in_the_same_directory(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", PYPROJECT)
    own = write(
        tmp_path / "llmregress.toml",
        '[models.chat]\nid = "gpt-5.5-2026-04-23"\n\n[[lifecycle]]\nid = "o3"\nretires_on = ""\n',
    )
    config = load_model_config(tmp_path)
    assert config.path == own
    assert list(config.roles) == ["chat"]
    assert config.resolve("@chat") == "gpt-5.5-2026-04-23"
    assert config.lifecycle().classify("o3").retires_on is None


def test_nearest_config_wins_and_pyproject_without_section_is_skipped(tmp_path: Path) -> None:
    outer = write(tmp_path / "llmregress.toml", '[models.chat]\nid = "claude-opus-4-7"\n')
    write(tmp_path / "pkg" / "pyproject.toml", '[project]\nname = "pkg"\n')
    assert find_config_file(tmp_path / "pkg") == outer
    inner = write(tmp_path / "pkg" / "pyproject.toml", "[tool.llmregress]\n")
    assert find_config_file(tmp_path / "pkg") == inner
    assert load_model_config(tmp_path / "pkg").roles == {}
    assert find_config_file(inner) == inner  # a file as start: its directory


def test_no_config_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_model_config()
    assert config == ModelConfig()
    assert config.path is None
    assert config.resolve("claude-sonnet-4-6") == "claude-sonnet-4-6"
    with pytest.raises(ModelConfigError, match=r"unknown model role 'chat': no model config"):
        config.resolve("@chat")


def test_unknown_role_lists_the_known_roles(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", PYPROJECT)
    config = load_model_config(path=path)
    with pytest.raises(ModelConfigError) as excinfo:
        config.resolve("@summary")
    assert str(excinfo.value) == (
        f"unknown model role 'summary' in {path}; known roles: chat, judge"
    )
    assert excinfo.value.path == path
    with pytest.raises(ModelConfigError, match="empty model reference"):
        config.resolve("@")


def test_lifecycle_files_are_read_relative_to_the_config(tmp_path: Path) -> None:
    write(
        tmp_path / "lifecycle" / "openai.toml",
        '[[lifecycle]]\nid = "gpt-5.5-2026-04-23"\nretires_on = 2027-05-05\n',
    )
    path = write(
        tmp_path / "pyproject.toml",
        "[tool.llmregress.models.judge]\n"
        'id = "gpt-5.5-2026-04-23"\n'
        "[[tool.llmregress.lifecycle]]\n"
        'file = "lifecycle/openai.toml"\n'
        "[[tool.llmregress.lifecycle]]\n"
        'id = "claude-opus-4-7"\n'
        "retires_on = 2027-06-01\n",
    )
    config = load_model_config(path=path)
    assert config.lifecycle_files == (tmp_path / "lifecycle" / "openai.toml",)
    data = config.lifecycle()
    assert data.classify("gpt-5.5-2026-04-23").retires_on == date(2027, 5, 5)
    assert data.classify("claude-opus-4-7").retires_on == date(2027, 6, 1)
    assert [o.id for o in config.lifecycle_overrides] == ["gpt-5.5-2026-04-23", "claude-opus-4-7"]


def test_fallback_on_another_surface_is_a_different_model(tmp_path: Path) -> None:
    path = write(
        tmp_path / "llmregress.toml",
        '[models.chat]\nid = "claude-sonnet-4-6"\n'
        'fallbacks = ["vertex:claude-sonnet-4-6", "anthropic.claude-sonnet-4-6"]\n',
    )
    assert load_model_config(path=path).roles["chat"].fallbacks == (
        "vertex:claude-sonnet-4-6",
        "anthropic.claude-sonnet-4-6",
    )


PY = "tool.llmregress."


def assert_refused(tmp_path: Path, body: str, key: str, problem: str) -> None:
    """Loading ``body`` as pyproject.toml fails, naming the file, the key and the problem."""
    path = write(tmp_path / "pyproject.toml", body)
    with pytest.raises(ModelConfigError) as excinfo:
        load_model_config(tmp_path)
    assert str(excinfo.value) == f"{path}: {key}: {problem}"
    assert (excinfo.value.path, excinfo.value.key) == (path, key)


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        (
            '[tool.llmregress.models.chat]\nid = "claude-sonnet-4-6"\nfallback = ["o3"]\n',
            PY + "models.chat.fallback",
            "unknown key (allowed: id, fallbacks, retires_on)",
        ),
        (
            "[tool.llmregress.models.chat]\nid = 4\n",
            PY + "models.chat.id",
            "expected a non-empty string, got int 4",
        ),
        (
            "[tool.llmregress.models.chat]\nfallbacks = []\n",
            PY + "models.chat.id",
            "missing: every role needs a model id",
        ),
        (
            '[tool.llmregress.models.chat]\nid = "claude-sonnet-4-6"\nfallbacks = "o3"\n',
            PY + "models.chat.fallbacks",
            "expected a list of model ids, got str 'o3'",
        ),
        (
            '[tool.llmregress.models.chat]\nid = "claude-sonnet-4-6"\nfallbacks = ["o3", ""]\n',
            PY + "models.chat.fallbacks[1]",
            "expected a non-empty string, got str ''",
        ),
        (
            '[tool.llmregress.models]\nchat = "claude-sonnet-4-6"\n',
            PY + "models.chat",
            "expected a table with id = \"...\", got str 'claude-sonnet-4-6' "
            "(write [tool.llmregress.models.chat] and id = ... under it)",
        ),
        (
            '[tool.llmregress.models.chat]\nid = "claude-sonnet-4-6"\nretires_on = "2027-02-30"\n',
            PY + "models.chat.retires_on",
            "expected a date YYYY-MM-DD, got str '2027-02-30'",
        ),
        (
            '[tool.llmregress.models.chat]\nid = "claude-sonnet-4-6"\nretires_on = "soon"\n',
            PY + "models.chat.retires_on",
            "expected a date YYYY-MM-DD, got str 'soon'",
        ),
        (
            '[tool.llmregress.models.chat]\nid = "claude-sonnet-4-6"\n'
            'fallbacks = ["gpt-5.5-2026-04-23", "anthropic:claude-sonnet-4-6"]\n',
            PY + "models.chat.fallbacks[1]",
            "'anthropic:claude-sonnet-4-6' repeats tool.llmregress.models.chat.id "
            "('claude-sonnet-4-6') in the fallback chain",
        ),
        (
            '[tool.llmregress.models.chat]\nid = "gpt-5.5"\nfallbacks = ["gpt-5.5-2026-04-23"]\n',
            PY + "models.chat.fallbacks[0]",
            "'gpt-5.5-2026-04-23' and tool.llmregress.models.chat.id ('gpt-5.5') are the same "
            "model (alias 'gpt-5.5' points to 'gpt-5.5-2026-04-23'); "
            "a fallback must be a different model",
        ),
        (
            '[tool.llmregress.models.chat]\nid = "claude-opus-4-7"\n'
            'fallbacks = ["claude-sonnet-4-5-20250929", "claude-sonnet-4-5"]\n',
            PY + "models.chat.fallbacks[1]",
            "'claude-sonnet-4-5' and tool.llmregress.models.chat.fallbacks[0] "
            "('claude-sonnet-4-5-20250929') are the same model (alias 'claude-sonnet-4-5' "
            "points to 'claude-sonnet-4-5-20250929'); a fallback must be a different model",
        ),
        (
            '[[tool.llmregress.lifecycle]]\nid = "o3"\nretires = 2027-01-01\n',
            PY + "lifecycle[0].retires",
            "unknown key (allowed: id, surface, kind, resolves_to, digest, version, "
            "deprecated_on, retires_on, source)",
        ),
        (
            "[tool.llmregress]\nlifecycle = 3\n",
            PY + "lifecycle",
            "expected an array of tables [[tool.llmregress.lifecycle]], got int 3",
        ),
        (
            '[[tool.llmregress.lifecycle]]\nfile = "x.toml"\nid = "o3"\n',
            PY + "lifecycle[0].id",
            "an entry with 'file' includes an overrides file and takes no other key",
        ),
        (
            "[[tool.llmregress.lifecycle]]\nfile = 3\n",
            PY + "lifecycle[0].file",
            "expected a non-empty string, got int 3",
        ),
    ],
)
def test_validation_errors_name_the_file_and_the_key(
    tmp_path: Path, body: str, key: str, problem: str
) -> None:
    assert_refused(tmp_path, body, key, problem)


def test_errors_in_llmregress_toml_use_top_level_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "llmregress.toml", '[models.chat]\nid = "o3"\nfallbacks = ["o3"]\n')
    with pytest.raises(ModelConfigError) as excinfo:
        load_model_config(tmp_path)
    assert str(excinfo.value) == (
        f"{path}: models.chat.fallbacks[0]: 'o3' repeats models.chat.id ('o3') in the "
        "fallback chain"
    )


def test_invalid_toml_and_missing_lifecycle_file(tmp_path: Path) -> None:
    bad = write(tmp_path / "a" / "llmregress.toml", "[models.chat\n")
    with pytest.raises(ModelConfigError, match=r"llmregress\.toml: invalid TOML: "):
        load_model_config(path=bad)
    missing = write(tmp_path / "b" / "llmregress.toml", '[[lifecycle]]\nfile = "nope.toml"\n')
    with pytest.raises(ModelConfigError) as excinfo:
        load_model_config(path=missing)
    assert str(excinfo.value).startswith(
        f"{missing}: lifecycle[0].file: {tmp_path / 'b' / 'nope.toml'}: cannot read"
    )
    assert excinfo.value.key == "lifecycle[0].file"


def test_models_package_never_imports_pytest() -> None:
    offenders = [
        path.name
        for path in sorted(MODELS_DIR.glob("*.py"))
        if "import pytest\n" in path.read_text() or "from pytest " in path.read_text()
    ]
    assert offenders == []


# -- roles that name other roles ------------------------------------------------------------

REFERENCES = """\
[tool.llmregress.models.chat]
id = "claude-sonnet-4-6"
fallbacks = ["gpt-5.5-2026-04-23"]

[tool.llmregress.models.summary]
id = "@chat"                      # chat's id and fallbacks

[tool.llmregress.models.digest]
id = "@summary"                   # through summary to chat
fallbacks = ["@judge"]            # its own fallbacks: the judge role's id

[tool.llmregress.models.solo]
id = "@chat"
fallbacks = []                    # no fallbacks, not chat's
retires_on = "2027-02-17"         # the date of the id it resolves to

[tool.llmregress.models.judge]
id = "openai:gemini-2.5-flash"
"""


def test_a_role_naming_another_role_resolves_through_the_chain(tmp_path: Path) -> None:
    config = load_model_config(path=write(tmp_path / "pyproject.toml", REFERENCES))
    roles = config.roles
    assert roles["summary"] == ModelRole(
        name="summary",
        id="claude-sonnet-4-6",
        fallbacks=("gpt-5.5-2026-04-23",),
        ref="chat",
    )
    assert roles["digest"] == ModelRole(
        name="digest", id="claude-sonnet-4-6", fallbacks=("openai:gemini-2.5-flash",), ref="summary"
    )
    assert roles["solo"] == ModelRole(
        name="solo", id="claude-sonnet-4-6", retires_on=date(2027, 2, 17), ref="chat"
    )
    assert config.lifecycle().classify("claude-sonnet-4-6").retires_on == date(2027, 2, 17)
    assert roles["chat"].ref is None
    assert config.resolve("@digest") == config.resolve("@summary") == "claude-sonnet-4-6"
    assert config.model_ids() == (
        "claude-sonnet-4-6",
        "gpt-5.5-2026-04-23",
        "openai:gemini-2.5-flash",
    )
    # lifecycle checks see the resolved ids, with the dates of the id's vendor
    findings = config.check(TODAY)
    assert [(f.role, f.code) for f in findings] == [
        ("digest fallback 1", "retiring"),
        ("judge", "retiring"),
    ]
    assert findings[1].message == (
        "judge: openai:gemini-2.5-flash retires on 2026-12-01 (in 5 days); migrate before then"
    )


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        (
            '[tool.llmregress.models.chat]\nid = "@summary"\n'
            '[tool.llmregress.models.judge]\nid = "o3"\n',
            PY + "models.chat.id",
            "'@summary' names no role; known roles: chat, judge",
        ),
        (
            '[tool.llmregress.models.a]\nid = "@b"\n'
            '[tool.llmregress.models.b]\nid = "@c"\n'
            '[tool.llmregress.models.c]\nid = "@missing"\n',
            PY + "models.c.id",
            "'@missing' names no role; known roles: a, b, c",
        ),
        (
            '[tool.llmregress.models.a]\nid = "@b"\n[tool.llmregress.models.b]\nid = "@a"\n',
            PY + "models.a.id",
            "role references form a cycle: a -> b -> a; one of these roles needs a model id",
        ),
        (
            '[tool.llmregress.models.x]\nid = "@a"\n'
            '[tool.llmregress.models.a]\nid = "@b"\n'
            '[tool.llmregress.models.b]\nid = "@c"\n'
            '[tool.llmregress.models.c]\nid = "@b"\n',
            PY + "models.b.id",
            "role references form a cycle: b -> c -> b; one of these roles needs a model id",
        ),
        (
            '[tool.llmregress.models.chat]\nid = "@chat"\n',
            PY + "models.chat.id",
            "role references form a cycle: chat -> chat; one of these roles needs a model id",
        ),
        (
            '[tool.llmregress.models.chat]\nid = "@"\n',
            PY + "models.chat.id",
            "'@' is not a role reference: write '@' and a role name (as '@chat')",
        ),
        (
            '[tool.llmregress.models.chat]\nid = "o3"\nfallbacks = ["@backup"]\n',
            PY + "models.chat.fallbacks[0]",
            "'@backup' names no role; known roles: chat",
        ),
        (
            # a fallback naming its own role is its own id again
            '[tool.llmregress.models.chat]\nid = "o3-2025-04-16"\nfallbacks = ["@chat"]\n',
            PY + "models.chat.fallbacks[0]",
            "'o3-2025-04-16' repeats tool.llmregress.models.chat.id ('o3-2025-04-16') in the "
            "fallback chain",
        ),
    ],
)
def test_bad_role_references_are_refused_naming_the_roles(
    tmp_path: Path, body: str, key: str, problem: str
) -> None:
    assert_refused(tmp_path, body, key, problem)


def test_resolve_follows_references_in_a_config_built_in_code() -> None:
    config = ModelConfig(
        roles={
            "chat": ModelRole(name="chat", id="claude-sonnet-4-6"),
            "summary": ModelRole(name="summary", id="@chat"),
            "a": ModelRole(name="a", id="@b"),
            "b": ModelRole(name="b", id="@a"),
        }
    )
    assert config.resolve("@summary") == "claude-sonnet-4-6"
    with pytest.raises(
        ModelConfigError, match=r"^model role references form a cycle: a -> b -> a$"
    ):
        config.resolve("@a")


def test_the_same_model_through_another_sdk_is_a_different_fallback(tmp_path: Path) -> None:
    # another endpoint (an OpenAI-compatible gateway) fails on its own
    ok = write(
        tmp_path / "a" / "llmregress.toml",
        '[models.chat]\nid = "claude-sonnet-4-6"\nfallbacks = ["openai:claude-sonnet-4-6"]\n',
    )
    assert load_model_config(path=ok).roles["chat"].fallbacks == ("openai:claude-sonnet-4-6",)
    # the same SDK, written two ways, is the same model
    same = write(
        tmp_path / "b" / "llmregress.toml",
        '[models.chat]\nid = "openai:gpt-5.5"\nfallbacks = ["gpt-5.5-2026-04-23"]\n',
    )
    with pytest.raises(ModelConfigError, match="are the same model"):
        load_model_config(path=same)


def test_plugin_resolves_role_references(
    pytester: pytest.Pytester,
    make_server: Callable[[dict[str, Any]], Any],
    provider_env: Callable[[Any], None],
) -> None:
    (pytester.path / "golden_cases").mkdir()
    (pytester.path / "golden_cases" / "qa.jsonl").write_text(
        json.dumps({"id": "c1", "user": "hi", "reference": "hello"}) + "\n"
    )
    server = make_server(
        {
            "models": {
                "claude-sonnet-4-6": {"answers": [{"match": "hi", "reply": "hello"}]},
                "gpt-5.5-2026-04-23": {"judge": True},
            }
        }
    )
    provider_env(server)
    pytester.makepyprojecttoml(
        """
        [tool.llmregress.models.chat]
        id = "claude-sonnet-4-6"
        [tool.llmregress.models.candidate]
        id = "@chat"
        [tool.llmregress.models.judge]
        id = "gpt-5.5-2026-04-23"
        """
    )
    result = pytester.runpytest("--llm-model=@candidate", "--llm-judge-model=@judge")
    result.assert_outcomes(passed=1)
    assert [r.requested_model for r in server.requests].count("claude-sonnet-4-6") == 1
    pytester.makepyprojecttoml(
        """
        [tool.llmregress.models.chat]
        id = "@candidate"
        [tool.llmregress.models.candidate]
        id = "@chat"
        """
    )
    refused = pytester.runpytest("--llm-model=@candidate", "--llm-judge-model=gpt-5.5-2026-04-23")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    output = pytest.LineMatcher((refused.stdout.str() + refused.stderr.str()).splitlines())
    output.fnmatch_lines(
        ["*models.chat.id: role references form a cycle: chat -> candidate -> chat*"]
    )
