"""``llmregress canary status | advance | rollback`` on real files: byte-exact, atomic edits."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pytest_llmregress import canary_cli, cli
from pytest_llmregress.canary_cli import (
    CanaryEditError,
    ConcurrentEditError,
    _verify,
    edit_canary_text,
    write_atomic,
)

NOW = "2026-11-26T10:00:00Z"

PYPROJECT = """\
[project]
name = "support-bot"  # the app
version = "1.4.0"

[tool.llmregress.models.chat]
id = "claude-sonnet-4-6"
fallbacks = ["gpt-5.5-2026-04-23"]

# Sonnet 4.6 -> Opus 4.7, see the migration doc.
[tool.llmregress.canary]
production = "claude-sonnet-4-6"
candidate  = "claude-opus-4-7"
experiment_id = "opus-4-7-migration"
  canary_pct   =  5     # edited by `llmregress canary`; keep this comment
stage_started_at = 2026-11-25T08:00:00Z
min_requests = 100

[[tool.llmregress.canary.stages]]   # 1% for a day
pct = 1
min_hours = 24
max_regression_rate = 0.02

[[tool.llmregress.canary.stages]]
pct = 5
min_hours = 24
max_regression_rate = 0.02

[[tool.llmregress.canary.stages]]
pct = 25
min_hours = 48
max_regression_rate = 0.01
max_error_rate = 0.005

[tool.ruff]
line-length = 100
# canary_pct = 99  <- not the canary table
"""

GOOD_METRICS = {
    "control": {"requests": 5000, "errors": 10, "regressions": 50},
    "candidate": {"requests": 300, "errors": 1, "regressions": 4},
}
BAD_METRICS = {
    "control": {"requests": 5000, "errors": 10, "regressions": 50},
    "candidate": {"requests": 300, "errors": 1, "regressions": 30},
}

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_bytes(PYPROJECT.encode())
    return path


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str) -> tuple[int, str, str]:
        code = canary_cli.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def metrics_file(tmp_path: Path, data: object, name: str = "metrics.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def changed_lines(before: bytes, after: bytes) -> list[tuple[bytes, bytes]]:
    """Pairs of differing lines; the files must have the same number of lines."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def canary_table(path: Path) -> dict[str, object]:
    table = tomllib.loads(path.read_text())["tool"]["llmregress"]["canary"]
    assert isinstance(table, dict)
    return table


# -- status -----------------------------------------------------------------------------------


def test_status_prints_stage_pct_time_and_decision(project: Path, run: Run) -> None:
    code, out, _ = run("status", "--config", str(project), "--now", NOW)
    assert code == 0
    assert "stage 2 of 3 (5% of users; next: 25%)" in out
    assert "canary_pct: 5" in out
    assert "26.0 h (since 2026-11-25T08:00:00Z; the stage needs 24 h)" in out
    assert "pass --metrics" in out

    metrics = metrics_file(project.parent, GOOD_METRICS)
    code, out, _ = run("status", "--config", str(project), "--now", NOW, "--metrics", metrics)
    assert code == 0
    assert "candidate:  requests 300, errors 1, regressions 4" in out
    assert "decision:   promote: Promoting from stage 2 of 3" in out


def test_status_json_and_config_discovery(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project.parent)
    metrics = metrics_file(project.parent, BAD_METRICS)
    code, out, _ = run("status", "--json", "--metrics", metrics, "--now", NOW)
    assert code == 0
    data = json.loads(out)
    assert data["config"] == str(project)
    assert data["stage"] == 2
    assert data["canary_pct"] == 5
    assert data["hours_at_stage"] == 26
    assert data["decision"]["action"] == "rollback"
    assert "10.00%" in data["decision"]["reason"]


def test_dispatched_by_the_llmregress_command(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["canary", "status", "--config", str(project), "--now", NOW]) == 0
    assert "stage 2 of 3" in capsys.readouterr().out


# -- advance ----------------------------------------------------------------------------------


def test_advance_refused_without_metrics_or_when_controller_holds(project: Path, run: Run) -> None:
    before = project.read_bytes()
    code, _, err = run("advance", "--config", str(project), "--now", NOW)
    assert code == 1
    assert "advance refused (no --metrics given): the controller says hold" in err
    assert "0 requests, fewer than the 100" in err
    assert "--force" in err

    metrics = metrics_file(project.parent, BAD_METRICS)
    code, _, err = run("advance", "--config", str(project), "--now", NOW, "--metrics", metrics)
    assert code == 1
    assert "the controller says rollback" in err
    assert project.read_bytes() == before


def test_advance_with_force(project: Path, run: Run) -> None:
    before = project.read_bytes()
    code, out, err = run("advance", "--force", "--config", str(project), "--now", NOW)
    assert code == 0
    assert "forcing the advance" in err
    assert "canary_pct 5 -> 25" in out
    assert changed_lines(before, project.read_bytes()) == [
        (
            b"  canary_pct   =  5     # edited by `llmregress canary`; keep this comment\n",
            b"  canary_pct   =  25     # edited by `llmregress canary`; keep this comment\n",
        ),
        (
            b"stage_started_at = 2026-11-25T08:00:00Z\n",
            b"stage_started_at = 2026-11-26T10:00:00Z\n",
        ),
    ]


def test_advance_when_the_controller_promotes(project: Path, run: Run) -> None:
    metrics = metrics_file(project.parent, GOOD_METRICS)
    code, out, _ = run("advance", "--config", str(project), "--now", NOW, "--metrics", metrics)
    assert code == 0
    assert "now stage 3 of 3 (25% of users; next: 100%)" in out
    table = canary_table(project)
    assert table["canary_pct"] == 25
    assert table["stage_started_at"] == datetime(2026, 11, 26, 10, tzinfo=UTC)

    # Fresh stage: 0 h of the required 48 -> hold.
    code, _, err = run("advance", "--config", str(project), "--now", NOW, "--metrics", metrics)
    assert code == 1
    assert "0.0 h of the required 48 h" in err
    # After the last stage comes 100; at 100 there is nothing left to advance.
    later = "2026-11-29T10:00:00Z"
    assert run("advance", "--config", str(project), "--now", later, "--metrics", metrics)[0] == 0
    assert canary_table(project)["canary_pct"] == 100
    code, _, err = run("advance", "--force", "--config", str(project))
    assert code == 1
    assert "100% already" in err


# -- rollback ---------------------------------------------------------------------------------


def test_rollback_changes_only_two_lines_atomically(project: Path, run: Run) -> None:
    os.chmod(project, 0o640)
    before = project.read_bytes()
    listing = sorted(os.listdir(project.parent))
    code, out, _ = run(
        "rollback", "--config", str(project), "--now", NOW, "--reason", "refusals up 3x"
    )
    assert code == 0
    assert "canary_pct 5 -> 0" in out
    assert "every user gets claude-sonnet-4-6 again" in out
    assert "Reason: refusals up 3x" in out
    after = project.read_bytes()
    assert changed_lines(before, after) == [
        (
            b"  canary_pct   =  5     # edited by `llmregress canary`; keep this comment\n",
            b"  canary_pct   =  0     # edited by `llmregress canary`; keep this comment\n",
        ),
        (
            b"stage_started_at = 2026-11-25T08:00:00Z\n",
            b"stage_started_at = 2026-11-26T10:00:00Z\n",
        ),
    ]
    assert sorted(os.listdir(project.parent)) == listing  # no temporary file left behind
    assert stat.S_IMODE(project.stat().st_mode) == 0o640
    doc_before, doc_after = tomllib.loads(before.decode()), tomllib.loads(after.decode())
    assert doc_after["tool"]["ruff"] == doc_before["tool"]["ruff"]
    assert canary_table(project)["canary_pct"] == 0

    # Rolling back again changes nothing.
    code, out, _ = run("rollback", "--config", str(project))
    assert code == 0
    assert "0% already" in out
    assert project.read_bytes() == after

    # From 0% the controller promotes to the first stage, metrics or not.
    code, out, _ = run("advance", "--config", str(project), "--now", "2026-11-27T00:00:00Z")
    assert code == 0
    assert "canary_pct 0 -> 1" in out
    assert canary_table(project)["canary_pct"] == 1


def test_rollback_in_llmregress_toml_with_crlf_and_quoted_date(tmp_path: Path, run: Run) -> None:
    text = (
        "# canary for the chat role\r\n"
        "[canary]\r\n"
        "production = 'claude-sonnet-4-6'\r\n"
        'candidate = "claude-opus-4-7"\r\n'
        'experiment_id = "exp1"\r\n'
        '"canary_pct" = 2.5\r\n'
        'stage_started_at = "2026-11-20T00:00:00+01:00"  # quoted on purpose\r\n'
        "stages = [{pct = 2.5, min_hours = 1, max_regression_rate = 0.1}]\r\n"
    )
    path = tmp_path / "llmregress.toml"
    path.write_bytes(text.encode())
    code, _, _ = run("rollback", "--config", str(path), "--now", NOW)
    assert code == 0
    assert changed_lines(text.encode(), path.read_bytes()) == [
        (b'"canary_pct" = 2.5\r\n', b'"canary_pct" = 0\r\n'),
        (
            b'stage_started_at = "2026-11-20T00:00:00+01:00"  # quoted on purpose\r\n',
            b'stage_started_at = "2026-11-26T10:00:00Z"  # quoted on purpose\r\n',
        ),
    ]


def test_missing_stage_started_at_is_added_after_canary_pct(tmp_path: Path, run: Run) -> None:
    text = PYPROJECT.replace("stage_started_at = 2026-11-25T08:00:00Z\n", "")
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    assert run("rollback", "--config", str(path), "--now", NOW)[0] == 0
    old, new = text.splitlines(keepends=True), path.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(old) if "canary_pct" in line)
    assert new[index].startswith("  canary_pct   =  0     # edited")
    assert new[index + 1] == "  stage_started_at = 2026-11-26T10:00:00Z\n"
    assert new[:index] == old[:index]
    assert new[index + 2 :] == old[index + 1 :]


def test_refuses_a_table_it_cannot_edit_line_by_line(tmp_path: Path, run: Run) -> None:
    text = (
        "[tool.llmregress]\n"
        'canary = {production = "claude-sonnet-4-6", candidate = "claude-opus-4-7", '
        'experiment_id = "e", canary_pct = 5, '
        "stages = [{pct = 5, min_hours = 1, max_regression_rate = 0.1}]}\n"
    )
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    code, _, err = run("rollback", "--config", str(path), "--now", NOW)
    assert code == 2
    assert "nothing was written" in err
    assert path.read_text() == text
    assert os.listdir(tmp_path) == ["pyproject.toml"]


def test_lines_inside_multiline_strings_are_not_keys() -> None:
    text = (
        '[canary]\nproduction = """\ncanary_pct = 1\n[canary]\n"""\n'
        'candidate = "claude-opus-4-7"\nexperiment_id = "e"\ncanary_pct = 5\n'
        "stages = [{pct = 5, min_hours = 1, max_regression_rate = 0.1}]\n"
    )
    when = datetime(2026, 11, 26, tzinfo=UTC)
    new = edit_canary_text(text, Path("llmregress.toml"), 0, when)
    assert new == text.replace(
        "canary_pct = 5\n", "canary_pct = 0\nstage_started_at = 2026-11-26T00:00:00Z\n"
    )


def test_edit_is_verified_by_reparsing() -> None:
    # An edit that would change anything else is refused, whatever the line parser thought.
    text = (
        '[canary]\nproduction = "claude-sonnet-4-6"\ncandidate = "claude-opus-4-7"\n'
        "experiment_id = 'e'\ncanary_pct = 5\n"
        "stages = [{pct = 5, min_hours = 1, max_regression_rate = 0.1}]\n"
    )
    when = datetime(2026, 11, 26, tzinfo=UTC)
    path = Path("llmregress.toml")
    edited = edit_canary_text(text, path, 0, when)
    with pytest.raises(CanaryEditError, match="more than canary_pct"):
        _verify(text, edited.replace("'e'", "'f'"), path, 0, when)
    with pytest.raises(CanaryEditError, match="would not parse"):
        _verify(text, edited + "[canary\n", path, 0, when)
    with pytest.raises(CanaryEditError, match="as intended"):
        _verify(text, edited, path, 1, when)


def test_failed_write_leaves_the_file_and_no_temp_file(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = project.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    code, _, err = run("rollback", "--config", str(project), "--now", NOW)
    assert code == 2
    assert "disk full" in err
    assert project.read_bytes() == before
    assert os.listdir(project.parent) == ["pyproject.toml"]


def test_concurrent_change_is_detected(project: Path) -> None:
    with pytest.raises(ConcurrentEditError):
        write_atomic(project, b"new", expected=b"what we read earlier")
    assert project.read_bytes() == PYPROJECT.encode()
    assert os.listdir(project.parent) == ["pyproject.toml"]


# -- errors -----------------------------------------------------------------------------------


def test_bad_metrics_and_missing_config(project: Path, run: Run, tmp_path: Path) -> None:
    bad = metrics_file(tmp_path, {"candidate": {"requests": 5, "errors": 9}}, "bad.json")
    code, _, err = run("status", "--config", str(project), "--metrics", bad)
    assert code == 2
    assert "errors (9) cannot exceed requests (5)" in err
    unknown = metrics_file(tmp_path, {"treatment": {}}, "unknown.json")
    assert run("status", "--config", str(project), "--metrics", unknown)[0] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run("status", "--config", str(empty / "pyproject.toml"))
    assert code == 2
    assert "cannot read" in err
