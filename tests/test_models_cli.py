"""``llmregress models lint|check|refresh``: called through ``main([...])`` (and once as the
console script in a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cli.models import SUPPRESSION, main, suppressed_codes
from pytest_llmregress.models import load_overrides_file

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
            "cell": None,
        },
        {
            "path": "src/app.py",
            "line": 4,
            "id": "claude-3-haiku-20240307",
            "level": "warning",
            "code": "bypasses-config",
            "message": f"claude-3-haiku-20240307 {BYPASS}",
            "cell": None,
        },
        {
            "path": "src/app.py",
            "line": 5,
            "id": "gpt-5.5",
            "level": "warning",
            "code": "alias",
            "message": "alias gpt-5.5 currently points to gpt-5.5-2026-04-23; pin a dated snapshot",
            "cell": None,
        },
        {
            "path": "src/app.py",
            "line": 5,
            "id": "gpt-5.5",
            "level": "warning",
            "code": "bypasses-config",
            "message": f"gpt-5.5 {BYPASS}",
            "cell": None,
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
        "digest": None,
        "version": None,
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


# -- lint: more file types ------------------------------------------------------------------

APP_TS = """\
// const OLD = "claude-2.1";
/* "claude-2.0" in a block
   comment */
const chat: string = "openai:gemini-2.0-flash";
const url = "https://example.com/v1"; // "claude-2.1" after code
const tpl = `gpt-4o`;
const built = `${prefix}-claude-2.1`;
const prose = "switch from gpt-4o to claude-2.1";
const many = `first line
claude-2.1`;
const last = 'claude-3-haiku-20240307';
"""


def lint_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[tuple[Any, ...]]:
    code, out, err = run(capsys, "lint", *argv, "--today", TODAY, "--format", "json")
    assert code in (0, 1), err
    return [(f["path"], f["cell"], f["line"], f["id"], f["code"]) for f in json.loads(out)]


def test_lint_reads_javascript_and_typescript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "web" / "app.ts", APP_TS)
    for suffix in ("js", "mjs", "cjs", "tsx", "jsx"):
        write(tmp_path / "web" / f"m.{suffix}", 'export const M = "claude-2.1";\n')
    monkeypatch.chdir(tmp_path)
    assert lint_json(capsys) == [
        ("web/app.ts", None, 4, "openai:gemini-2.0-flash", "retired"),
        ("web/app.ts", None, 4, "openai:gemini-2.0-flash", "alias"),
        ("web/app.ts", None, 6, "gpt-4o", "retiring"),
        ("web/app.ts", None, 6, "gpt-4o", "alias"),
        ("web/app.ts", None, 11, "claude-3-haiku-20240307", "retired"),
        *[
            (f"web/m.{s}", None, 1, "claude-2.1", "retired")
            for s in sorted(("cjs", "js", "jsx", "mjs", "tsx"))
        ],
    ]


def test_lint_reads_shell_scripts_and_dockerfiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "run.sh",
        '#!/bin/sh\n# MODEL=claude-2.1\nMODEL="${MODEL:-claude-2.0}"\n'
        "python -m app --model claude-3-haiku-20240307\n",
    )
    dockerfile = (
        "FROM python:3.12-slim\n# ENV MODEL=claude-2.1\nENV MODEL=claude-2.0\n"
        'CMD ["python", "-m", "app", "--judge", "claude-instant-1.2"]\n'
    )
    for name in ("Dockerfile", "Dockerfile.prod", "deploy/api.dockerfile", "Containerfile"):
        write(tmp_path / name, dockerfile)
    monkeypatch.chdir(tmp_path)
    docker = [(3, "claude-2.0"), (4, "claude-instant-1.2")]
    assert lint_json(capsys) == [
        *[("Containerfile", None, line, mid, "retired") for line, mid in docker],
        *[("Dockerfile", None, line, mid, "retired") for line, mid in docker],
        *[("Dockerfile.prod", None, line, mid, "retired") for line, mid in docker],
        ("run.sh", None, 3, "claude-2.0", "retired"),
        ("run.sh", None, 4, "claude-3-haiku-20240307", "retired"),
        *[("deploy/api.dockerfile", None, line, mid, "retired") for line, mid in docker],
    ]


def notebook(cells: list[dict[str, Any]], language: str = "python") -> str:
    metadata = {"kernelspec": {"name": language, "language": language, "display_name": "k"}}
    return json.dumps({"cells": cells, "metadata": metadata, "nbformat": 4}, indent=1)


def code_cell(*lines: str) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "source": list(lines)}


def test_lint_reads_the_code_cells_of_notebooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["We used claude-2.1 before.\n"]},
        code_cell("%pip install openai\n", "import openai\n", "\n", "M = 'claude-2.0'\n"),
        code_cell("!echo claude-2.1\n", "# claude-2.1\n", "J = 'gpt-4o'"),
        code_cell("%%bash\n", "run --model claude-instant-1.2\n"),
        {"cell_type": "raw", "metadata": {}, "source": "claude-2.1"},
        code_cell("s = 'prose about claude-2.1'\n", 'N = "claude-3-haiku-20240307"\n'),
    ]
    write(tmp_path / "nb" / "analysis.ipynb", notebook(cells))
    js_cells = [code_cell("const m = 'claude-2.0'; // 'claude-2.1'\n")]
    write(tmp_path / "nb" / "deno.ipynb", notebook(js_cells, "typescript"))
    monkeypatch.chdir(tmp_path)
    assert lint_json(capsys) == [
        ("nb/analysis.ipynb", 2, 4, "claude-2.0", "retired"),
        ("nb/analysis.ipynb", 3, 3, "gpt-4o", "retiring"),
        ("nb/analysis.ipynb", 3, 3, "gpt-4o", "alias"),
        ("nb/analysis.ipynb", 4, 2, "claude-instant-1.2", "retired"),
        ("nb/analysis.ipynb", 6, 2, "claude-3-haiku-20240307", "retired"),
        ("nb/deno.ipynb", 1, 1, "claude-2.0", "retired"),
    ]
    code, out, _ = run(capsys, "lint", "nb/analysis.ipynb", "--today", TODAY)
    assert code == 1
    assert out.splitlines()[0] == (
        "nb/analysis.ipynb:cell 2:4: claude-2.0: error: claude-2.0 retired on 2025-07-21; "
        "every request to it fails (HTTP 404)"
    )


def test_lint_a_notebook_that_is_not_json_is_scanned_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "broken.ipynb", '{"cells": [\n  "claude-2.0"\n')
    monkeypatch.chdir(tmp_path)
    assert lint_json(capsys) == [("broken.ipynb", None, 2, "claude-2.0", "retired")]


# -- lint: .gitignore, --exclude ----------------------------------------------------------

RETIRED_PY = 'M = "claude-2.1"\n'


def ignore_tree(root: Path) -> None:
    write(
        root / ".gitignore",
        "# build output\n"
        "gen/\n"  # a folder at any depth
        "*.local.py\n"
        "!keep.local.py\n"  # re-included
        "/top_only.py\n"  # anchored to this folder
        "docs/**/draft_*.py\n"
        "trailing.py   \n"  # trailing spaces do not count
        "\\#hash.py\n"
        "logs/**\n"  # everything inside the top-level logs/
        "**/cache_[0-9].py\n"
        "report_[!a].py\n",
    )
    write(root / "sub" / ".gitignore", "*.py\n!wanted.py\n")
    names = (
        "app.py",
        "gen/x.py",
        "src/gen/y.py",
        "src/gen.py",  # gen/ matches folders only
        "a.local.py",
        "src/b.local.py",
        "keep.local.py",
        "top_only.py",
        "src/top_only.py",
        "docs/draft_1.py",
        "docs/a/b/draft_2.py",
        "docs/final.py",
        "trailing.py",
        "#hash.py",
        "sub/x.py",
        "sub/wanted.py",
        "sub/deeper/y.py",
        "logs/a.py",
        "src/logs/b.py",
        "cache_1.py",
        "src/cache_2.py",
        "cache_x.py",
        "report_a.py",
        "report_b.py",
    )
    for name in names:
        write(root / name, RETIRED_PY)


#: What ``ignore_tree`` leaves to lint (git agrees: see the next tests).
NOT_IGNORED = [
    "app.py",
    "cache_x.py",
    "docs/final.py",
    "keep.local.py",
    "report_a.py",
    "src/gen.py",
    "src/logs/b.py",
    "src/top_only.py",
    "sub/wanted.py",
]


def linted_paths(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    code, out, err = run(capsys, "lint", *argv, "--today", TODAY, "--format", "json")
    assert code in (0, 1), err
    return sorted({f["path"] for f in json.loads(out)})


def test_lint_honours_gitignore_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ignore_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert linted_paths(capsys) == NOT_IGNORED
    # everything with --no-gitignore
    assert len(linted_paths(capsys, "--no-gitignore")) == 24
    # a file named explicitly is read even if ignored
    assert linted_paths(capsys, "gen/x.py", "app.py") == ["app.py", "gen/x.py"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to compare with")
def test_gitignore_matching_agrees_with_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ignore_tree(tmp_path)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    listed = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "--", "*.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    monkeypatch.chdir(tmp_path)
    assert sorted(listed) == NOT_IGNORED
    assert linted_paths(capsys) == sorted(listed)


def test_lint_in_a_subfolder_of_a_repository_reads_the_gitignore_files_above(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".git" / "info").mkdir(parents=True)
    write(tmp_path / ".git" / "info" / "exclude", "scratch_*.py\n")
    write(tmp_path / ".gitignore", "generated/\n/src/vendored.py\n")
    write(tmp_path / "src" / ".gitignore", "*.tmp.py\n")
    for name in (
        "src/app.py",
        "src/generated/x.py",
        "src/vendored.py",
        "src/scratch_1.py",
        "src/pkg/a.tmp.py",
        "src/pkg/ok.py",
    ):
        write(tmp_path / name, RETIRED_PY)
    monkeypatch.chdir(tmp_path / "src")
    assert linted_paths(capsys) == ["app.py", "pkg/ok.py"]
    monkeypatch.chdir(tmp_path)
    assert linted_paths(capsys, "src/pkg") == ["src/pkg/ok.py"]
    # outside a repository, only the .gitignore files of the folders linted count
    shutil.rmtree(tmp_path / ".git")
    monkeypatch.chdir(tmp_path / "src")
    assert linted_paths(capsys) == [
        "app.py",
        "generated/x.py",
        "pkg/ok.py",
        "scratch_1.py",
        "vendored.py",
    ]


def test_lint_exclude_globs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "app.py",
        "tests/fixtures/models.py",
        "tests/test_x.py",
        "web/vendor/lib.js",
        "web/app.min.js",
        "web/app.js",
        "pkg/tests/t.py",
    ):
        write(
            tmp_path / name, RETIRED_PY.replace("M = ", "export const M = ", name.endswith(".js"))
        )
    monkeypatch.chdir(tmp_path)
    assert linted_paths(capsys, "--exclude", "*.min.js", "--exclude", "vendor") == [
        "app.py",
        "pkg/tests/t.py",
        "tests/fixtures/models.py",
        "tests/test_x.py",
        "web/app.js",
    ]
    # a glob with a "/" is relative to the current directory
    assert linted_paths(capsys, "--exclude", "tests/fixtures/", "--exclude", "/web/*.js") == [
        "app.py",
        "pkg/tests/t.py",
        "tests/test_x.py",
        "web/vendor/lib.js",
    ]
    assert linted_paths(capsys, "--exclude", "**/tests/**") == [
        "app.py",
        "web/app.js",
        "web/app.min.js",
        "web/vendor/lib.js",
    ]
    # paths named explicitly are excluded too, also by a folder above them
    assert linted_paths(capsys, "app.py", "web/app.min.js", "--exclude", "*.min.js") == ["app.py"]
    assert linted_paths(capsys, "app.py", "web/vendor/lib.js", "--exclude", "vendor") == ["app.py"]
    assert linted_paths(capsys, "app.py", "web/vendor", "--exclude", "web/") == ["app.py"]
    # globs for a folder outside the current directory are relative to it
    monkeypatch.chdir(tmp_path / "pkg")
    assert linted_paths(capsys, str(tmp_path / "web"), "--exclude", "/vendor/") == [
        str(tmp_path / "web" / "app.js"),
        str(tmp_path / "web" / "app.min.js"),
    ]


# -- lint: the suppression comment --------------------------------------------------------


def test_lint_suppression_comment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "pyproject.toml", PYPROJECT)
    write(
        tmp_path / "app.py",
        'A = "claude-2.1"  # llmregress: ignore\n'
        'B = "gpt-4o"  # llmregress: ignore[alias, bypasses-config]\n'
        'C = "gpt-4o"  # llmregress:ignore[alias]\n'
        'D = "claude-2.1"  # noqa: llmregress: ignore[bypasses-config]\n'
        'E = "claude-2.1"\n',
    )
    write(tmp_path / "app.ts", 'const a = "claude-2.1"; // llmregress: ignore\n')
    write(tmp_path / "app.yaml", "a: claude-2.1  # llmregress: ignore\nb: claude-2.1\n")
    write(tmp_path / "run.sh", "M=claude-2.1  # llmregress: ignore\n")
    write(
        tmp_path / "nb.ipynb",
        notebook([code_cell("a = 'claude-2.1'  # llmregress: ignore\n", "b = 'claude-2.1'\n")]),
    )
    monkeypatch.chdir(tmp_path)
    assert lint_json(capsys) == [
        ("app.py", None, 2, "gpt-4o", "retiring"),
        ("app.py", None, 3, "gpt-4o", "retiring"),
        ("app.py", None, 3, "gpt-4o", "bypasses-config"),
        ("app.py", None, 4, "claude-2.1", "retired"),
        ("app.py", None, 5, "claude-2.1", "retired"),
        ("app.py", None, 5, "claude-2.1", "bypasses-config"),
        ("app.yaml", None, 2, "claude-2.1", "retired"),
        ("app.yaml", None, 2, "claude-2.1", "bypasses-config"),
        ("nb.ipynb", 1, 2, "claude-2.1", "retired"),
        ("nb.ipynb", 1, 2, "claude-2.1", "bypasses-config"),
    ]


def test_suppressed_codes() -> None:
    assert suppressed_codes("x = 1") is None
    assert suppressed_codes("x  # llmregress: ignore") == frozenset()
    assert suppressed_codes("<!-- llmregress: ignore[alias,retiring] -->") == frozenset(
        {"alias", "retiring"}
    )
    assert SUPPRESSION == "llmregress: ignore"


# -- identity across vendors in check and lint --------------------------------------------


def test_check_and_lint_apply_the_id_vendors_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "llmregress.toml",
        '[models.chat]\nid = "openai:gemini-2.5-flash"\n'
        '[models.fast]\nid = "openai:mistral-large-latest"\n'
        '[models.summary]\nid = "@chat"\n',
    )
    write(tmp_path / "app.py", 'M = "openai:gemini-2.0-flash"\nN = "gemini-2.5-flash"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "check", "--today", TODAY, "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert [
        (m["role"], m["id"], m["kind"], m["surface"], m["retires_on"], m["status"])
        for m in report["models"]
    ] == [
        ("chat", "openai:gemini-2.5-flash", "snapshot", "gemini-api", "2026-12-01", "retiring"),
        ("fast", "openai:mistral-large-latest", "alias", "mistral-api", None, "alias"),
        ("summary", "openai:gemini-2.5-flash", "snapshot", "gemini-api", "2026-12-01", "retiring"),
    ]
    assert run(capsys, "check", "--today", "2026-12-01")[0] == 1  # retired on Google's date
    assert run(capsys, "check", "--today", TODAY, "--require-pinned")[0] == 1  # -latest
    assert lint_json(capsys) == [
        ("app.py", None, 1, "openai:gemini-2.0-flash", "retired"),
        ("app.py", None, 1, "openai:gemini-2.0-flash", "alias"),
        ("app.py", None, 1, "openai:gemini-2.0-flash", "bypasses-config"),
        ("app.py", None, 2, "gemini-2.5-flash", "retiring"),
    ]


# -- output folders -----------------------------------------------------------------------


def test_refresh_and_ics_create_the_output_folder(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    make_server: Callable[[dict[str, Any]], Any],
) -> None:
    server = make_server({"models": {"gpt-5.5-2026-04-23": {"retires_on": "2027-01-10"}}})
    argv = ["refresh", "--openai-base-url", server.openai_base_url, "--api-key", "sk-test"]
    out_path = project / "lifecycle" / "vendors" / "openai.json"
    code, out, err = run(capsys, *argv, "-o", str(out_path), "--today", TODAY)
    assert (code, out, err) == (0, f"Wrote 1 lifecycle entry to {out_path}\n", "")
    assert [e.id for e in load_overrides_file(out_path)] == ["gpt-5.5-2026-04-23"]
    # relative to the current directory too
    code, _, _ = run(capsys, *argv, "-o", "rel/dir/openai.toml")
    assert code == 0
    written = (project / "rel" / "dir" / "openai.toml").read_text()
    assert 'with file = "rel/dir/openai.toml"' in written  # the include line to copy
    # a path that cannot be a folder is a usage error
    write(project / "afile", "")
    code, _, err = run(capsys, *argv, "-o", "afile/openai.toml")
    assert code == 2
    assert err.startswith("llmregress models refresh: cannot write afile/openai.toml: ")
    # nothing is created when the models cannot be listed
    server.stop()
    code, _, _ = run(capsys, *argv, "-o", str(project / "never" / "x.toml"))
    assert code == 1
    assert not (project / "never").exists()

    ics = project / "calendars" / "2026" / "models.ics"
    code, out, _ = run(capsys, "check", "--today", TODAY, "--ics", str(ics))
    assert code == 0
    assert ics.read_bytes().startswith(b"BEGIN:VCALENDAR\r\n")
