"""Self-hosted model ids: pinned by a project lifecycle entry (``digest``, ``version``), dated
like any model, refused by ``--llm-require-pinned`` until they are pinned."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cli.models import main
from pytest_llmregress.models import (
    LifecycleError,
    ModelConfigError,
    bundled_lifecycle,
    classify,
    load_model_config,
    load_overrides_file,
)
from pytest_llmregress.models.lifecycle import dump_overrides
from pytest_llmregress.testing.server import LocalProviderServer
from tests.conftest import JUDGE
from tests.test_plugin_e2e import answers, qa_cases, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]

TODAY = dt.date(2026, 11, 26)
SHA = "sha256:4f1c9a0e8d7b6c5a4f1c9a0e8d7b6c5a4f1c9a0e8d7b6c5a4f1c9a0e8d7b6c5a"
SHORT = "sha256:4f1c9a0e8d7b..."
HF_COMMIT = "0e9e39f249a16976918f6564b8830bc894c89659"
SELF_HOSTED = "tiny-chat-v1"
HOW_TO_PIN = (
    'add a [[tool.llmregress.lifecycle]] entry (or [[lifecycle]] in llmregress.toml) with id = "'
)


# -- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_id",
    [
        "openai:tiny-chat-v1",
        "openai:llama-3.1-8b-instruct",
        "openai:/models/my-ft",
        "qwen2.5:7b",
        "openai:qwen2.5:7b",
    ],
)
def test_an_unmarked_self_hosted_id_is_refused_by_require_pinned_saying_how_to_pin_it(
    model_id: str,
) -> None:
    info = classify(model_id, today=TODAY)
    assert (info.provider, info.surface, info.kind, info.pinned_to) == (None, None, "unknown", None)
    assert bundled_lifecycle().check(model_id, "candidate", TODAY) == []
    [finding] = bundled_lifecycle().check(model_id, "candidate", TODAY, require_pinned=True)
    assert (finding.level, finding.code) == ("error", "unpinned")
    assert finding.message == (
        f"candidate: {model_id} names no known vendor (a self-hosted model?) and nothing pins "
        f'it: {HOW_TO_PIN}{model_id}" and digest = "sha256:<digest of the weights>" or '
        'version = "<a version you control>"'
    )


def test_only_ids_of_no_known_vendor_are_refused_as_unpinned() -> None:
    def codes(model_id: str) -> list[tuple[str, str]]:
        findings = bundled_lifecycle().check(model_id, None, TODAY, require_pinned=True)
        return [(f.level, f.code) for f in findings]

    assert codes(f"openai:{SELF_HOSTED}") == [("error", "unpinned")]
    # gpt-oss-20b may be served by your own vLLM, an Azure deployment name says nothing, a
    # Bedrock id is Amazon's to retire: the vendor or the surface is known, so they only warn
    for model_id in ("gpt-oss-20b", "azure:my-deployment", "bedrock:meta.llama3-70b-instruct"):
        assert codes(model_id) == [("warning", "unknown-kind")]


@pytest.mark.parametrize(
    ("entry_id", "looked_up"),
    [
        ("openai:tiny-chat-v1", "tiny-chat-v1"),
        ("tiny-chat-v1", "openai:tiny-chat-v1"),
        ("openai:/models/my-ft", "/models/my-ft"),
        ("openai:qwen2.5:7b", "qwen2.5:7b"),
        ("openai:llama-4-latest", "openai:llama-4-latest"),  # the pin wins over "-latest"
        ("openai:gpt-oss-20b", "gpt-oss-20b"),  # open weights of a known vendor
    ],
)
def test_a_digest_pins_a_self_hosted_id(entry_id: str, looked_up: str) -> None:
    data = bundled_lifecycle().with_overrides(
        [{"id": entry_id, "digest": SHA, "source": "team runbook"}]
    )
    info = data.classify(looked_up, today=TODAY)
    assert (info.kind, info.pinned, info.known, info.digest, info.version, info.source) == (
        "snapshot",
        True,
        True,
        SHA,
        None,
        "team runbook",
    )
    assert info.pinned_to == SHORT
    assert info.to_dict()["digest"] == SHA
    assert data.check(looked_up, "candidate", TODAY, require_pinned=True) == []
    assert classify(looked_up).digest is None  # the bundled data is untouched


def test_a_version_alone_pins_and_both_are_shown() -> None:
    data = bundled_lifecycle().with_overrides(
        [
            {"id": "openai:tiny-chat-v1", "version": "2026-11-30"},
            {"id": "openai:big-chat", "version": "v3", "digest": HF_COMMIT},
            {"id": "openai:ft-model", "kind": "fine-tune", "digest": HF_COMMIT},
        ]
    )
    tiny = data.classify("tiny-chat-v1", today=TODAY)
    assert (tiny.kind, tiny.version, tiny.digest, tiny.pinned_to) == (
        "snapshot",
        "2026-11-30",
        None,
        "version 2026-11-30",
    )
    big = data.classify("big-chat", today=TODAY)
    assert big.pinned_to == "version v3, 0e9e39f249a1..."
    assert data.classify("ft-model").kind == "fine-tune"
    for model_id in ("tiny-chat-v1", "big-chat", "ft-model"):
        assert data.check(model_id, None, TODAY, require_pinned=True) == []


def test_dates_alone_do_not_pin_a_self_hosted_id() -> None:
    data = bundled_lifecycle().with_overrides([{"id": SELF_HOSTED, "retires_on": "2027-06-30"}])
    findings = data.check(SELF_HOSTED, None, TODAY, require_pinned=True)
    assert [(f.level, f.code) for f in findings] == [("error", "unpinned")]


def test_a_pinned_self_hosted_id_retires_on_the_projects_date() -> None:
    data = bundled_lifecycle().with_overrides(
        [
            {
                "id": f"openai:{SELF_HOSTED}",
                "digest": SHA,
                "version": "2026-11-30",
                "deprecated_on": "2026-11-01",
                "retires_on": "2026-12-20",
                "source": "pyproject.toml: tool.llmregress.lifecycle[0]",
            }
        ]
    )
    name = f"{SELF_HOSTED} (version 2026-11-30, {SHORT})"
    [retiring] = data.check(SELF_HOSTED, "candidate", TODAY)
    assert (retiring.level, retiring.code, retiring.days_left) == ("warning", "retiring", 24)
    assert retiring.model_id == SELF_HOSTED
    assert retiring.message == (
        f"candidate: {name} retires on 2026-12-20 (in 24 days); deprecated since 2026-11-01; "
        "migrate before then"
    )
    [retired] = data.check(SELF_HOSTED, "candidate", dt.date(2026, 12, 20), require_pinned=True)
    assert (retired.level, retired.code, retired.days_left) == ("error", "retired", 0)
    assert retired.message == (
        f"candidate: {name} retired on 2026-12-20 (set in pyproject.toml: "
        "tool.llmregress.lifecycle[0]); move to its successor, or change retires_on there"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"digest": "main"},
            "cfg[0].digest: expected a content digest of the weights: 'sha256:<hex>', a "
            "Hugging Face revision commit hash or an Ollama digest (12 or more hex digits), "
            "got str 'main'; a name of your own goes in 'version'",
        ),
        ({"digest": "sha256:4f1c9a0e"}, "cfg[0].digest: expected a content digest"),
        ({"digest": "sha256:" + "z" * 64}, "cfg[0].digest: expected a content digest"),
        ({"digest": 12}, "got int 12; a name of your own goes in 'version'"),
        (
            {"version": "latest"},
            "cfg[0].version: 'latest' moves to new weights; name a version that does not (a "
            "date, a release number) or give the weights' digest",
        ),
        ({"version": "Main"}, "cfg[0].version: 'Main' moves to new weights"),
        ({"version": " "}, "cfg[0].version: expected a non-empty string, got str ' '"),
        ({"version": 3}, "cfg[0].version: expected a non-empty string, got int 3"),
        (
            {"kind": "alias", "digest": SHA},
            "cfg[0].kind: 'alias' contradicts digest, which pins the id (a snapshot); "
            "leave kind out",
        ),
        ({"kind": "unknown", "version": "v3"}, "cfg[0].kind: 'unknown' contradicts version"),
    ],
)
def test_bad_pins_are_refused_naming_the_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(LifecycleError) as excinfo:
        bundled_lifecycle().with_overrides([{"id": SELF_HOSTED, **entry}], where="cfg")
    assert message in str(excinfo.value)


def test_override_files_keep_digest_and_version(tmp_path: Path) -> None:
    entries = [{"id": SELF_HOSTED, "digest": SHA, "version": "v3", "retires_on": "2027-06-30"}]
    for name in ("o.toml", "o.json"):
        path = tmp_path / name
        dump_overrides(entries, path)
        [loaded] = load_overrides_file(path)
        assert loaded.to_dict() == entries[0]
    assert (tmp_path / "o.toml").read_text().splitlines() == [
        "[[lifecycle]]",
        f'id = "{SELF_HOSTED}"',
        f'digest = "{SHA}"',
        'version = "v3"',
        "retires_on = 2027-06-30",
    ]


# -- the model config ---------------------------------------------------------------------


PYPROJECT = f"""\
[tool.llmregress.models.chat]
id = "openai:{SELF_HOSTED}"
fallbacks = ["openai:qwen2.5:7b"]

[tool.llmregress.models.judge]
id = "{JUDGE}"

[[tool.llmregress.lifecycle]]
id = "openai:{SELF_HOSTED}"
digest = "{SHA}"
version = "2026-11-30"
retires_on = 2027-06-30

[[tool.llmregress.lifecycle]]
file = "lifecycle/ollama.toml"
"""

OLLAMA_TOML = """\
[[lifecycle]]
id = "qwen2.5:7b"
digest = "845dbda0ea48"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_config_pins_self_hosted_ids_naming_the_entry(tmp_path: Path) -> None:
    pyproject = write(tmp_path / "pyproject.toml", PYPROJECT)
    write(tmp_path / "lifecycle" / "ollama.toml", OLLAMA_TOML)
    config = load_model_config(path=pyproject)
    data = config.lifecycle()
    chat = data.classify(f"openai:{SELF_HOSTED}", today=TODAY)
    assert (chat.kind, chat.digest, chat.version, chat.retires_on, chat.source) == (
        "snapshot",
        SHA,
        "2026-11-30",
        dt.date(2027, 6, 30),
        f"{pyproject}: tool.llmregress.lifecycle[0]",
    )
    ollama = data.classify("openai:qwen2.5:7b", today=TODAY)
    assert (ollama.kind, ollama.pinned_to, ollama.source) == (
        "snapshot",
        "845dbda0ea48",
        f"{tmp_path / 'lifecycle' / 'ollama.toml'}: lifecycle[0]",
    )
    assert config.check(TODAY, require_pinned=True) == []


@pytest.mark.parametrize(
    ("entry", "key", "problem"),
    [
        ('digest = "main"', "digest", "expected a content digest of the weights"),
        ('version = "latest"', "version", "'latest' moves to new weights"),
        ('kind = "alias"\nversion = "v3"', "kind", "'alias' contradicts version"),
    ],
)
def test_config_errors_name_the_file_and_the_key(
    tmp_path: Path, entry: str, key: str, problem: str
) -> None:
    path = write(
        tmp_path / "pyproject.toml",
        f'[[tool.llmregress.lifecycle]]\nid = "openai:{SELF_HOSTED}"\n{entry}\n',
    )
    with pytest.raises(ModelConfigError) as excinfo:
        load_model_config(path=path)
    assert excinfo.value.key == f"tool.llmregress.lifecycle[0].{key}"
    assert str(excinfo.value).startswith(f"{path}: tool.llmregress.lifecycle[0].{key}: {problem}")


# -- llmregress models --------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write(tmp_path / "pyproject.toml", PYPROJECT)
    write(tmp_path / "lifecycle" / "ollama.toml", OLLAMA_TOML)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_models_check_shows_the_pin(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "--today", "2026-11-26", "--require-pinned")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Models in pyproject.toml on 2026-11-26 (lifecycle data as of 2026-11-26 + 2 overrides)",
        "",
        "ROLE             ID                   KIND      PINNED TO"
        "                                   RESOLVES TO  RETIRES ON  DAYS LEFT  STATUS",
        f"chat             openai:tiny-chat-v1  snapshot  version 2026-11-30, {SHORT}  "
        "-            2027-06-30  216        ok",
        "chat fallback 1  openai:qwen2.5:7b    snapshot  845dbda0ea48"
        "                                -            -           -          ok",
        f"judge            {JUDGE}   snapshot  -                                           "
        "-            -           -          ok",
    ]
    code, out, _ = run(capsys, "check", "--today", "2026-11-26", "--format", "json")
    rows = json.loads(out)["models"]
    assert [(r["id"], r["kind"], r["digest"], r["version"]) for r in rows] == [
        (f"openai:{SELF_HOSTED}", "snapshot", SHA, "2026-11-30"),
        ("openai:qwen2.5:7b", "snapshot", "845dbda0ea48", None),
        (JUDGE, "snapshot", None, None),
    ]


def test_models_check_refuses_an_unpinned_self_hosted_id(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project / "lifecycle" / "ollama.toml", "")  # the fallback is no longer pinned
    assert run(capsys, "check", "--today", "2026-11-26")[0] == 0
    code, out, _ = run(capsys, "check", "--today", "2026-11-26", "--require-pinned")
    assert code == 1
    assert (
        "error: chat fallback 1: openai:qwen2.5:7b names no known vendor (a self-hosted model?) "
        f'and nothing pins it: {HOW_TO_PIN}openai:qwen2.5:7b" and digest = "sha256:'
    ) in out
    row = next(line for line in out.splitlines() if line.startswith("chat fallback 1"))
    assert row.split()[4:] == ["unknown", "-", "-", "-", "-", "unpinned"]


def test_models_check_dates_a_self_hosted_id_in_the_calendar(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ics = project / "retirements.ics"
    assert run(capsys, "check", "--today", "2026-11-26", "--ics", str(ics))[0] == 0
    unfolded = ics.read_bytes().decode("utf-8").replace("\r\n ", "")
    assert (
        f"DESCRIPTION:openai:{SELF_HOSTED} (version 2026-11-30\\, {SHORT}) retires on "
        "2027-06-30\\, the project's date.\\nConfigured roles: chat."
    ) in unfolded
    assert run(capsys, "check", "--today", "2027-06-30")[0] == 1  # retired: exit 1


def test_models_lint_finds_a_pinned_self_hosted_id(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project / "app.py", f'MODEL = "openai:{SELF_HOSTED}"\nOTHER = "openai:big-chat"\n')
    code, out, _ = run(capsys, "lint", "app.py", "--today", "2026-11-26", "--require-pinned")
    # the pinned id is a known model (a role's, so nothing to report); an unknown one is not
    # an id lint can recognise
    assert (code, out) == (0, "No problems found.\n")
    write(project / "app.py", f'MODEL = "{SELF_HOSTED}"\n')
    write(project / "pyproject.toml", PYPROJECT.replace("[tool.llmregress.models.chat]", "[x]"))
    code, out, _ = run(capsys, "lint", "app.py", "--today", "2026-11-26")
    assert code == 0
    assert f"app.py:1: {SELF_HOSTED}: warning: {SELF_HOSTED} bypasses the config" in out


# -- the plugin ---------------------------------------------------------------------------


def all_output(result: pytest.RunResult) -> pytest.LineMatcher:
    return pytest.LineMatcher((result.stdout.str() + result.stderr.str()).splitlines())


def self_hosted_scenario(cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "models": {
            SELF_HOSTED: {"answers": answers(cases)},
            JUDGE: {"judge": True, "system_fingerprint": "fp_test"},
        }
    }


def test_require_pinned_refuses_an_unpinned_self_hosted_id_until_it_is_pinned(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(self_hosted_scenario(cases))
    provider_env(server)
    args = [f"--llm-model=openai:{SELF_HOSTED}", f"--llm-judge-model={JUDGE}"]
    refused = pytester.runpytest(*args, "--llm-require-pinned")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    all_output(refused).fnmatch_lines(
        [
            "*no case was run (--llm-require-pinned is set)*",
            f"*candidate: {SELF_HOSTED} names no known vendor (a self-hosted model?) and nothing "
            f'pins it: add a *tool.llmregress.lifecycle* entry*id = "{SELF_HOSTED}" and '
            'digest = "sha256:<digest of the weights>" or version = "<a version you control>"*',
        ]
    )
    assert server.requests == []

    pytester.makepyprojecttoml(
        f"""
        [[tool.llmregress.lifecycle]]
        id = "openai:{SELF_HOSTED}"
        digest = "{SHA}"
        """
    )
    pinned = pytester.runpytest(*args, "--llm-require-pinned")
    pinned.assert_outcomes(passed=2)
    pinned.stdout.no_fnmatch_line("*model warning*")
    assert {r.requested_model for r in server.requests} == {SELF_HOSTED, JUDGE}


def test_a_retired_self_hosted_model_is_an_error_before_any_call(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(self_hosted_scenario(cases))
    provider_env(server)
    today = dt.date.today()

    def pyproject(retires_on: dt.date) -> None:
        pytester.makepyprojecttoml(
            f"""
            [tool.llmregress.models.chat]
            id = "openai:{SELF_HOSTED}"

            [tool.llmregress.models.judge]
            id = "{JUDGE}"

            [[tool.llmregress.lifecycle]]
            id = "openai:{SELF_HOSTED}"
            version = "2026-11-30"
            retires_on = {retires_on.isoformat()}
            """
        )

    pyproject(today - dt.timedelta(days=1))
    retired = pytester.runpytest("--llm-model=@chat")
    assert retired.ret == pytest.ExitCode.USAGE_ERROR
    all_output(retired).fnmatch_lines(
        [
            "*no case was run:",
            f"*candidate: {SELF_HOSTED} (version 2026-11-30) retired on "
            f"{today - dt.timedelta(days=1)} (set in *pyproject.toml: "
            "tool.llmregress.lifecycle[[]0[]]); move to its successor, or change retires_on "
            "there*",
        ]
    )
    assert server.requests == []

    pyproject(today + dt.timedelta(days=10))
    retiring = pytester.runpytest("--llm-model=@chat", "--llm-require-pinned")
    retiring.assert_outcomes(passed=2)
    retiring.stdout.fnmatch_lines(
        [
            f"*candidate: {SELF_HOSTED} (version 2026-11-30) retires on "
            f"{today + dt.timedelta(days=10)} (in 10 days); migrate before then*"
        ]
    )
