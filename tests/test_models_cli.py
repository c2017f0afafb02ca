"""``llmregress models lint|check|refresh``: called through ``main([...])`` (and once as the
console script in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.models import load_overrides_file
from pytest_llmregress.models.cli import main

ROOT = Path(__file__).resolve().parents[1]
TODAY = "2026-11-26"

PYPROJECT = """\
[project]
name = "app"

[tool.llmregress.models.chat]
id = "claude-sonnet-4-6"
fallbacks = ["gpt-5.5-2026-04-23"]
retires_on = "2027-02-17"

[tool.llmregress.models.judge]
id = "gpt-5.5-2026-04-23"
"""

APP_PY = """\
import os

CHAT = "claude-sonnet-4-6"
OLD = "claude-3-haiku-20240307"
JUDGE = os.environ.get("JUDGE", "gpt-5.5")
NOT_MODELS = ["claude-code", "hello", "gpt-engineer", "o"]
PROSE = "switch from gpt-4o to claude-sonnet-4-6"
"""

SETTINGS_YAML = """\
# model: claude-2.1
chat:
  model: claude-sonnet-4-6
  fallbacks:
    - gemini-flash-latest
gpt-4o: the key is not a value
"""

DATA_JSON = '{\n  "model": "gpt-5.5-2026-04-23",\n  "gpt-4": 1\n}\n'
SETTINGS_TOML = 'model = "claude-sonnet-4-5-20250929"  # was "gpt-4"\n'
DOTENV = "# MODEL=gpt-4\nMODEL=ft:gpt-4o-mini-2024-07-18:acme::x1 # fine-tune\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    write(root / "pyproject.toml", PYPROJECT)
    write(root / "src" / "app.py", APP_PY)
    write(root / "config" / "settings.yaml", SETTINGS_YAML)
    write(root / "config" / "data.json", DATA_JSON)
    write(root / "config" / "settings.toml", SETTINGS_TOML)
    write(root / ".env", DOTENV)
    # never read: VCS, virtualenvs (by name or by pyvenv.cfg), node_modules, build output
    for skipped in (".git/x.py", ".venv/x.py", "node_modules/x.json", "dist/x.py"):
        write(root / skipped, 'M = "claude-2.1"\n')
    write(root / "myenv" / "pyvenv.cfg", "home = /usr/bin\n")
    write(root / "myenv" / "lib" / "x.py", 'M = "claude-2.1"\n')
    write(root / "notes.md", "claude-2.1\n")  # not a linted file type
    monkeypatch.chdir(root)
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


BYPASS = (
    "bypasses the config: not a role or fallback in pyproject.toml; read it from there "
    '(load_model_config().resolve("@<role>"))'
)


def test_lint_text(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "lint", "--today", TODAY)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        ".env:2: ft:gpt-4o-mini-2024-07-18:acme::x1: warning: ft:gpt-4o-mini-2024-07-18:acme::x1 "
        "retires on 2027-01-14 (in 49 days; its base model gpt-4o-mini-2024-07-18); "
        "deprecated since 2026-10-14; migrate before then",
        f".env:2: ft:gpt-4o-mini-2024-07-18:acme::x1: warning: "
        f"ft:gpt-4o-mini-2024-07-18:acme::x1 {BYPASS}",
        "config/settings.toml:1: claude-sonnet-4-5-20250929: warning: "
        "claude-sonnet-4-5-20250929 retires on 2026-11-30 (in 4 days); "
        "deprecated since 2026-09-30; migrate before then",
        f"config/settings.toml:1: claude-sonnet-4-5-20250929: warning: "
        f"claude-sonnet-4-5-20250929 {BYPASS}",
        "config/settings.yaml:5: gemini-flash-latest: warning: alias gemini-flash-latest can "
        "be re-pointed by the provider at any time; pin a dated snapshot",
        f"config/settings.yaml:5: gemini-flash-latest: warning: gemini-flash-latest {BYPASS}",
        "src/app.py:4: claude-3-haiku-20240307: error: claude-3-haiku-20240307 retired on "
        "2026-04-20; every request to it fails (HTTP 404)",
        f"src/app.py:4: claude-3-haiku-20240307: warning: claude-3-haiku-20240307 {BYPASS}",
        "src/app.py:5: gpt-5.5: warning: alias gpt-5.5 currently points to "
        "gpt-5.5-2026-04-23; pin a dated snapshot",
        f"src/app.py:5: gpt-5.5: warning: gpt-5.5 {BYPASS}",
        "Found 10 problems (1 error, 9 warnings) in 4 files.",
    ]


def test_lint_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "lint", "src", "config/data.json", "--today", TODAY, "--format", "json"
    )
    assert code == 1
    assert json.loads(out) == [
        {
            "path": "src/app.py",
            "line": 4,
            "id": "claude-3-haiku-20240307",
            "level": "error",
            "code": "retired",
            "message": "claude-3-haiku-20240307 retired on 2026-04-20; every request to it "
            "fails (HTTP 404)",
        },
        {
            "path": "src/app.py",
            "line": 4,
            "id": "claude-3-haiku-20240307",
            "level": "warning",
            "code": "bypasses-config",
            "message": f"claude-3-haiku-20240307 {BYPASS}",
        },
        {
            "path": "src/app.py",
            "line": 5,
            "id": "gpt-5.5",
            "level": "warning",
            "code": "alias",
            "message": "alias gpt-5.5 currently points to gpt-5.5-2026-04-23; pin a dated snapshot",
        },
        {
            "path": "src/app.py",
            "line": 5,
            "id": "gpt-5.5",
            "level": "warning",
            "code": "bypasses-config",
            "message": f"gpt-5.5 {BYPASS}",
        },
    ]


def test_lint_exit_status(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # warnings only: 0, or 1 with --strict
    assert run(capsys, "lint", "config/settings.yaml", "--today", TODAY)[0] == 0
    assert run(capsys, "lint", "config/settings.yaml", "--today", TODAY, "--strict")[0] == 1
    # an alias is an error with --require-pinned
    code, out, _ = run(capsys, "lint", "config", "--today", TODAY, "--require-pinned")
    assert code == 1
    assert "config/settings.yaml:5: gemini-flash-latest: error: alias" in out
    # nothing found: 0 and a clean summary
    write(project / "clean" / "ok.py", 'CHAT = "claude-sonnet-4-6"\n')
    assert run(capsys, "lint", "clean", "--today", TODAY) == (0, "No problems found.\n", "")


def test_lint_without_config_reports_no_bypass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "app.py", 'M = "gpt-5.5-2026-04-23"\nN = "o3"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "lint", "--today", TODAY, "--warning-days", "10")
    assert code == 0
    assert out.splitlines() == [
        "app.py:2: o3: warning: o3 is deprecated since 2026-06-11; retires on 2026-12-11 "
        "(in 15 days)",
        "app.py:2: o3: warning: alias o3 currently points to o3-2025-04-16; pin a dated snapshot",
        "Found 2 problems (0 errors, 2 warnings) in 1 file.",
    ]


def test_lint_skips_the_config_file_and_its_lifecycle_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "llmregress.toml",
        '[[lifecycle]]\nfile = "lifecycle.json"\n[models.chat]\nid = "gpt-5.5"\n',
    )
    write(tmp_path / "lifecycle.json", '[{"id": "gpt-4o", "retires_on": "2027-01-14"}]')
    write(tmp_path / "app.py", 'M = "gpt-5.5"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "lint", ".", "--today", TODAY)
    assert (code, out.splitlines()) == (
        0,
        [
            "app.py:1: gpt-5.5: warning: alias gpt-5.5 currently points to "
            "gpt-5.5-2026-04-23; pin a dated snapshot",
            "Found 1 problem (0 errors, 1 warning) in 1 file.",
        ],
    )


def test_lint_broken_files_fall_back_to_scanning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "broken.py", 'def f(:\n    return "claude-2.1"\n')
    write(tmp_path / "broken.yaml", "a: [\n  model: claude-2.0  # claude-1.0\n")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "lint", "--today", TODAY, "--format", "json")
    assert code == 1
    assert [(f["path"], f["line"], f["id"], f["code"]) for f in json.loads(out)] == [
        ("broken.py", 2, "claude-2.1", "retired"),
        ("broken.yaml", 2, "claude-2.0", "retired"),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lint", "missing-dir"], "llmregress models lint: no such file or directory: missing-dir"),
        (["lint", "--today", "26.11.2026"], "expected a date YYYY-MM-DD, got '26.11.2026'"),
        (["lint", "--warning-days", "-1"], "expected a number of days >= 0, got '-1'"),
        (["lint", "--format", "xml"], "invalid choice: 'xml'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "usage: llmregress models"),
    ],
)
def test_usage_errors_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_config_error_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(project / "pyproject.toml", '[tool.llmregress.models.chat]\nmodel = "o3"\n')
    code, out, err = run(capsys, "check")
    assert (code, out) == (2, "")
    assert err == (
        f"llmregress models check: {project / 'pyproject.toml'}: "
        "tool.llmregress.models.chat.model: unknown key (allowed: id, fallbacks, retires_on)\n"
    )


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lint", "--help")
    assert code == 0
    assert "--strict" in out


# -- check --------------------------------------------------------------------------------

CHECK_PYPROJECT = (
    PYPROJECT
    + """
[tool.llmregress.models.summary]
id = "claude-sonnet-4-5-20250929"

[tool.llmregress.models.router]
id = "gpt-4o"
"""
)


def test_check_table(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(project / "pyproject.toml", CHECK_PYPROJECT)
    code, out, err = run(capsys, "check", "--today", TODAY)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Models in pyproject.toml on 2026-11-26 (lifecycle data as of 2026-11-26 + 1 override)",
        "",
        "ROLE             ID                          KIND      RESOLVES TO        RETIRES ON  "
        "DAYS LEFT  STATUS",
        "chat             claude-sonnet-4-6           snapshot  -                  2027-02-17  "
        "83         ok",
        "chat fallback 1  gpt-5.5-2026-04-23          snapshot  -                  -           "
        "-          ok",
        "judge            gpt-5.5-2026-04-23          snapshot  -                  -           "
        "-          ok",
        "summary          claude-sonnet-4-5-20250929  snapshot  -                  2026-11-30  "
        "4          retiring",
        "router           gpt-4o                      alias     gpt-4o-2024-08-06  2027-01-14  "
        "49         retiring",
        "",
        "warning: summary: claude-sonnet-4-5-20250929 retires on 2026-11-30 (in 4 days); "
        "deprecated since 2026-09-30; migrate before then",
        "warning: router: gpt-4o retires on 2027-01-14 (in 49 days); migrate before then",
        "warning: router: alias gpt-4o currently points to gpt-4o-2024-08-06; pin a dated snapshot",
    ]


def test_check_exits_1_when_a_configured_model_is_retired(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project / "pyproject.toml", CHECK_PYPROJECT)
    code, out, _ = run(capsys, "check", "--today", "2026-12-01", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert (report["today"], report["lifecycle_data_as_of"]) == ("2026-12-01", "2026-11-26")
    assert report["config"] == str(project / "pyproject.toml")
    assert report["models"][3] == {
        "role": "summary",
        "id": "claude-sonnet-4-5-20250929",
        "kind": "snapshot",
        "resolves_to": None,
        "retires_on": "2026-11-30",
        "days_left": -1,
        "status": "retired",
        "surface": "anthropic-api",
        "source": report["models"][3]["source"],
    }
    assert [(f["role"], f["code"]) for f in report["findings"]] == [
        ("summary", "retired"),
        ("router", "retiring"),
        ("router", "alias"),
    ]
    # warnings alone: 0, unless --strict
    assert run(capsys, "check", "--today", TODAY)[0] == 0
    assert run(capsys, "check", "--today", TODAY, "--strict")[0] == 1


def test_check_without_config_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "check")
    assert (code, out) == (2, "")
    assert err.startswith("llmregress models check: no model config found")


def _unfold(ics: str) -> list[str]:
    return ics.replace("\r\n ", "").split("\r\n")


def test_check_ics_export(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(project / "pyproject.toml", CHECK_PYPROJECT)
    ics_path = project / "retirements.ics"
    code, out, _ = run(capsys, "check", "--today", TODAY, "--ics", str(ics_path))
    assert code == 0
    assert out.splitlines()[-1] == f"Wrote 3 retirement events to {ics_path}"
    raw = ics_path.read_bytes()
    text = raw.decode("utf-8")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")  # CRLF only
    physical = text.split("\r\n")[:-1]
    assert all(len(line.encode("utf-8")) <= 75 for line in physical)
    assert any(line.startswith(" ") for line in physical)  # long lines were folded
    lines = _unfold(text)[:-1]
    assert lines[:6] == [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//pytest-llmregress//llmregress models check//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:Model retirements",
    ]
    assert lines[-1] == "END:VCALENDAR"
    assert [line for line in lines if line.startswith(("DTSTART", "SUMMARY", "TRIGGER"))] == [
        "DTSTART;VALUE=DATE:20261130",
        "SUMMARY:Model retirement: claude-sonnet-4-5-20250929 (summary)",
        "TRIGGER:-P30D",
        "DTSTART;VALUE=DATE:20270114",
        "SUMMARY:Model retirement: gpt-4o (router)",
        "TRIGGER:-P30D",
        "DTSTART;VALUE=DATE:20270217",
        "SUMMARY:Model retirement: claude-sonnet-4-6 (chat)",
        "TRIGGER:-P30D",
    ]
    assert lines.count("BEGIN:VEVENT") == lines.count("END:VEVENT") == 3
    assert lines.count("BEGIN:VALARM") == lines.count("ACTION:DISPLAY") == 3
    assert "DTEND;VALUE=DATE:20270218" in lines
    assert "DTSTAMP:20261126T000000Z" in lines
    description = next(line for line in lines if line.startswith("DESCRIPTION:claude-sonnet-4-6"))
    assert description.startswith(
        "DESCRIPTION:claude-sonnet-4-6 retires on 2027-02-17: every request to it fails "
        "after that.\\nConfigured roles: chat.\\n"
    )
    uids = [line for line in lines if line.startswith("UID:")]
    assert len(set(uids)) == 3
    assert all(uid.endswith("@pytest-llmregress") for uid in uids)

    # stable UIDs across runs and dates; the reminder follows --remind-days
    run(capsys, "check", "--today", "2026-12-24", "--ics", str(ics_path), "--remind-days", "7")
    again = _unfold(ics_path.read_bytes().decode("utf-8"))
    assert [line for line in again if line.startswith("UID:")] == uids
    assert {line for line in again if line.startswith("TRIGGER")} == {"TRIGGER:-P7D"}


# -- refresh ------------------------------------------------------------------------------


def test_refresh_writes_overrides_that_check_uses(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    make_server: Callable[[dict[str, Any]], Any],
) -> None:
    server = make_server(
        {
            "models": {
                "gpt-5.5-2026-04-23": {"retires_on": "2027-01-10"},
                "gpt-y-2025-02-02": {},
            }
        }
    )
    out_path = project / "openai-lifecycle.toml"
    code, out, err = run(
        capsys,
        "refresh",
        "--openai-base-url",
        server.openai_base_url,
        "--api-key",
        "sk-test",
        "-o",
        str(out_path),
        "--today",
        TODAY,
    )
    assert (code, out, err) == (0, f"Wrote 1 lifecycle entry to {out_path}\n", "")
    [entry] = load_overrides_file(out_path)
    assert entry.to_dict() == {
        "id": "gpt-5.5-2026-04-23",
        "surface": "openai-api",
        "retires_on": "2027-01-10",
        "source": f"GET {server.openai_base_url}/models shutdown_date (fetched 2026-11-26)",
    }
    code, out, _ = run(capsys, "check", "--today", TODAY, "--overrides", str(out_path))
    assert code == 0
    assert (
        "warning: judge: gpt-5.5-2026-04-23 retires on 2027-01-10 (in 45 days); migrate before then"
    ) in out.splitlines()


def test_refresh_to_stdout_and_errors(
    capsys: pytest.CaptureFixture[str],
    make_server: Callable[[dict[str, Any]], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = make_server({"models": {"gpt-x-2025-01-01": {"retires_on": "2027-01-14"}}})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    code, out, _ = run(capsys, "refresh", "--openai-base-url", server.openai_base_url)
    assert code == 0
    assert [e["id"] for e in json.loads(out)["lifecycle"]] == ["gpt-x-2025-01-01"]
    monkeypatch.delenv("OPENAI_API_KEY")
    code, _, err = run(capsys, "refresh", "--openai-base-url", server.openai_base_url)
    assert (code, err) == (
        2,
        "llmregress models refresh: no API key: pass --api-key or set OPENAI_API_KEY\n",
    )
    url = server.openai_base_url
    server.stop()
    code, _, err = run(capsys, "refresh", "--openai-base-url", url, "--api-key", "k")
    assert code == 1
    assert err.startswith("llmregress models refresh: cannot list models: ")


# -- the console script -------------------------------------------------------------------


def test_console_script_models_check(project: Path) -> None:
    write(project / "pyproject.toml", CHECK_PYPROJECT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest_llmregress.cli", "models", "check", "--today", "2026-12-01"],
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == ""
    assert (
        "summary          claude-sonnet-4-5-20250929  snapshot  -                  2026-11-30  "
        "-1         retired"
    ) in result.stdout.splitlines()
    assert (
        "error: summary: claude-sonnet-4-5-20250929 retired on 2026-11-30; "
        "every request to it fails (HTTP 404)"
    ) in result.stdout.splitlines()
