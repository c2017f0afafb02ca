"""``llmregress canary status | advance | rollback`` on real files: byte-exact, atomic edits,
exit statuses that tell hold from roll back, the rollback record."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pytest_llmregress import cli
from pytest_llmregress.cli import canary as canary_cli
from pytest_llmregress.cli.canary import (
    EXIT_ERROR,
    EXIT_HOLD,
    EXIT_OK,
    EXIT_ROLLBACK,
    EXIT_USAGE,
    CanaryEditError,
    ConcurrentEditError,
    _verify,
    edit_canary_text,
    write_atomic,
)
from pytest_llmregress.runtime.canary import CANARY_PCT_ENV, load_canary_config

NOW = "2026-11-26T10:00:00Z"

PCT_LINE = "  canary_pct   =  0.05     # edited by `llmregress canary`; keep this comment\n"
STARTED_LINE = "stage_started_at = 2026-11-25T08:00:00Z\n"

PYPROJECT = f"""\
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
{PCT_LINE}{STARTED_LINE}min_requests = 100

[[tool.llmregress.canary.stages]]   # 1% for a day
pct = 0.01
min_hours = 24
max_regression_rate = 0.02

[[tool.llmregress.canary.stages]]
pct = 0.05
min_hours = 24
max_regression_rate = 0.02

[[tool.llmregress.canary.stages]]
pct = 0.25
min_hours = 48
max_regression_rate = 0.01
max_error_rate = 0.005

[tool.ruff]
line-length = 100
# canary_pct = 0.99  <- not the canary table
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


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CANARY_PCT_ENV, raising=False)


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


def test_exit_statuses_are_distinct_and_leave_2_to_argparse() -> None:
    # The documented numbers: scripts branch on them.
    assert (EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_HOLD, EXIT_ROLLBACK) == (0, 1, 2, 3, 4)


# -- status -----------------------------------------------------------------------------------


def test_status_prints_fraction_stage_time_and_decision(project: Path, run: Run) -> None:
    code, out, _ = run("status", "--config", str(project), "--now", NOW)
    assert code == EXIT_OK
    assert "canary_pct: 0.05 (5%): buckets 0-499 of 10,000" in out
    assert "stage:      stage 2 of 3 at 0.05 (5%); next: 0.25 (25%)" in out
    assert "26.0 h (since 2026-11-25T08:00:00Z; the stage needs 24 h)" in out
    assert "pass --metrics" in out
    assert "override" not in out
    assert "rollback" not in out

    metrics = metrics_file(project.parent, GOOD_METRICS)
    code, out, _ = run("status", "--config", str(project), "--now", NOW, "--metrics", metrics)
    assert code == EXIT_OK
    assert "candidate:  requests 300, errors 1, regressions 4" in out
    assert "decision:   promote: Promoting from stage 2 of 3 at 0.05 (5%)" in out


def test_status_exit_status_tells_hold_from_roll_back(project: Path, run: Run) -> None:
    good = metrics_file(project.parent, GOOD_METRICS, "good.json")
    bad = metrics_file(project.parent, BAD_METRICS, "bad.json")
    too_early = "2026-11-25T20:00:00Z"  # 12 h of the 24 h
    code, out, _ = run("status", "--config", str(project), "--now", too_early, "--metrics", good)
    assert code == EXIT_HOLD
    assert "decision:   hold: Holding at stage 2 of 3" in out
    code, out, _ = run("status", "--config", str(project), "--now", too_early, "--metrics", bad)
    assert code == EXIT_ROLLBACK
    assert "decision:   rollback: The candidate's regression rate is 10.00%" in out
    assert run("status", "--config", str(project), "--now", NOW, "--metrics", good)[0] == EXIT_OK


def test_status_json_and_config_discovery(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project.parent)
    metrics = metrics_file(project.parent, BAD_METRICS)
    code, out, _ = run("status", "--json", "--metrics", metrics, "--now", NOW)
    assert code == EXIT_ROLLBACK
    data = json.loads(out)
    assert data["config"] == str(project)
    assert data["stage"] == 2
    assert data["canary_pct"] == 0.05
    assert data["candidate_buckets"] == 500
    assert data["next_pct"] == 0.25
    assert data["hours_at_stage"] == 26
    assert data["rollback"] is None
    assert data["env_override"] is None
    assert data["decision"]["action"] == "rollback"
    assert data["decision"]["next_pct"] == 0
    assert "10.00%" in data["decision"]["reason"]
    assert data["exit_status"] == EXIT_ROLLBACK


def test_status_reports_the_environment_override_without_applying_it(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CANARY_PCT_ENV, "0")
    code, out, _ = run("status", "--config", str(project), "--now", NOW)
    assert code == EXIT_OK
    assert "canary_pct: 0.05 (5%)" in out  # the file's value
    assert f"override:   {CANARY_PCT_ENV}=0 is set here; processes started with it use 0.0" in out
    code, out, _ = run("status", "--json", "--config", str(project), "--now", NOW)
    data = json.loads(out)
    assert data["canary_pct"] == 0.05
    assert data["env_override"]["canary_pct"] == 0.0
    monkeypatch.setenv(CANARY_PCT_ENV, "5")
    code, out, _ = run("status", "--config", str(project), "--now", NOW)
    assert code == EXIT_OK
    assert "it is invalid, so the application will fail to load" in out
    assert '0.05 or "5%"' in out


def test_dispatched_by_the_llmregress_command(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["canary", "status", "--config", str(project), "--now", NOW]) == 0
    assert "stage 2 of 3" in capsys.readouterr().out


def test_exit_status_of_the_real_process(project: Path) -> None:
    bad = metrics_file(project.parent, BAD_METRICS)
    command = [sys.executable, "-m", "pytest_llmregress.cli", "canary", "status"]
    args = ["--config", str(project), "--now", NOW, "--metrics", bad]
    done = subprocess.run([*command, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 4, done.stderr
    assert "decision:   rollback" in done.stdout


@pytest.mark.parametrize("command", ["status", "advance", "rollback"])
def test_help_lists_the_exit_statuses(
    command: str, capsys: pytest.CaptureFixture[str], project: Path
) -> None:
    with pytest.raises(SystemExit) as info:
        canary_cli.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"{EXIT_HOLD}  hold: not eligible to advance yet" in out
    assert f"{EXIT_ROLLBACK}  roll back now" in out
    assert f"{EXIT_USAGE}  usage error" in out
    assert CANARY_PCT_ENV in out
    assert "0.05 is 5% of users" in out


# -- advance ----------------------------------------------------------------------------------


def test_advance_refused_without_metrics_or_when_controller_holds(project: Path, run: Run) -> None:
    before = project.read_bytes()
    code, _, err = run("advance", "--config", str(project), "--now", NOW)
    assert code == EXIT_HOLD
    assert "advance refused (no --metrics given): the controller says hold" in err
    assert "0 requests, fewer than the 100" in err
    assert "--force" in err
    assert "Nothing was written." in err

    metrics = metrics_file(project.parent, BAD_METRICS)
    code, _, err = run("advance", "--config", str(project), "--now", NOW, "--metrics", metrics)
    assert code == EXIT_ROLLBACK
    assert "the controller says rollback" in err
    assert "llmregress canary rollback --reason" in err
    assert project.read_bytes() == before


def test_advance_with_force(project: Path, run: Run) -> None:
    before = project.read_bytes()
    code, out, err = run("advance", "--force", "--config", str(project), "--now", NOW)
    assert code == EXIT_OK
    assert "forcing the advance" in err
    assert "canary_pct 0.05 (5%) -> 0.25 (25%)" in out
    assert changed_lines(before, project.read_bytes()) == [
        (PCT_LINE.encode(), PCT_LINE.replace("0.05", "0.25").encode()),
        (STARTED_LINE.encode(), b"stage_started_at = 2026-11-26T10:00:00Z\n"),
    ]


def test_advance_when_the_controller_promotes_up_to_full_rollout(project: Path, run: Run) -> None:
    metrics = metrics_file(project.parent, GOOD_METRICS)
    code, out, _ = run("advance", "--config", str(project), "--now", NOW, "--metrics", metrics)
    assert code == EXIT_OK
    assert "now stage 3 of 3 at 0.25 (25%); next: 1.0 (100%)" in out
    table = canary_table(project)
    assert table["canary_pct"] == 0.25
    assert table["stage_started_at"] == datetime(2026, 11, 26, 10, tzinfo=UTC)

    # Fresh stage: 0 h of the required 48 -> hold.
    code, _, err = run("advance", "--config", str(project), "--now", NOW, "--metrics", metrics)
    assert code == EXIT_HOLD
    assert "0.0 h of the required 48 h" in err
    # After the last stage comes 1.0; at 1.0 there is nothing left to advance.
    later = "2026-11-29T10:00:00Z"
    code, out, _ = run("advance", "--config", str(project), "--now", later, "--metrics", metrics)
    assert code == EXIT_OK
    assert "canary_pct 0.25 (25%) -> 1.0 (100%)" in out
    assert "canary_pct   =  1.0     # edited" in project.read_text()
    assert canary_table(project)["canary_pct"] == 1.0
    code, _, err = run("advance", "--force", "--config", str(project))
    assert code == EXIT_HOLD
    assert "1.0 (every user) already" in err


def test_a_percentage_string_stays_a_percentage_string(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(PYPROJECT.replace("=  0.05     #", '=  "5%"     #'))
    assert run("advance", "--force", "--config", str(path), "--now", NOW)[0] == EXIT_OK
    assert '  canary_pct   =  "25%"     # edited' in path.read_text()
    assert canary_table(path)["canary_pct"] == "25%"
    assert load_canary_config(path=path, environ={}).canary_pct == 0.25
    assert run("rollback", "--config", str(path), "--now", NOW, "--reason", "r")[0] == EXIT_OK
    assert '  canary_pct   =  "0%"     # edited' in path.read_text()
    assert load_canary_config(path=path, environ={}).canary_pct == 0.0


# -- rollback ---------------------------------------------------------------------------------


def test_rollback_records_the_reason_and_changes_nothing_else(project: Path, run: Run) -> None:
    os.chmod(project, 0o640)
    listing = sorted(os.listdir(project.parent))
    code, out, _ = run(
        "rollback", "--config", str(project), "--now", NOW, "--reason", "refusals up 3x"
    )
    assert code == EXIT_OK
    assert "canary_pct 0.05 (5%) -> 0.0" in out
    assert "every user gets claude-sonnet-4-6 again" in out
    assert 'rollback_reason = "refusals up 3x"' in out
    assert f"{CANARY_PCT_ENV}=0" in out
    after = project.read_bytes()
    expected = PYPROJECT.replace(PCT_LINE, PCT_LINE.replace("0.05", "0.0")).replace(
        STARTED_LINE,
        "stage_started_at = 2026-11-26T10:00:00Z\n"
        "  rolled_back_at = 2026-11-26T10:00:00Z\n"
        '  rollback_reason = "refusals up 3x"\n',
    )
    assert after == expected.encode()
    assert sorted(os.listdir(project.parent)) == listing  # no temporary file left behind
    assert stat.S_IMODE(project.stat().st_mode) == 0o640
    table = canary_table(project)
    assert table["canary_pct"] == 0.0
    assert table["rollback_reason"] == "refusals up 3x"
    assert table["rolled_back_at"] == datetime(2026, 11, 26, 10, tzinfo=UTC)

    # Rolling back again changes nothing.
    code, out, _ = run("rollback", "--config", str(project), "--reason", "again")
    assert code == EXIT_OK
    assert "0.0 already; nothing changed" in out
    assert "refusals up 3x" in out
    assert project.read_bytes() == after


def test_advance_right_after_a_rollback_needs_force(project: Path, run: Run) -> None:
    reason = "refusals up 3x"
    run("rollback", "--config", str(project), "--now", NOW, "--reason", reason)
    rolled_back = project.read_bytes()
    later = "2026-11-27T00:00:00Z"
    metrics = metrics_file(project.parent, GOOD_METRICS)
    for extra in ((), ("--metrics", metrics)):
        code, _, err = run("advance", "--config", str(project), "--now", later, *extra)
        assert code == EXIT_HOLD
        assert "advance refused: the controller says hold: The canary was rolled back at " in err
        assert f"2026-11-26T10:00:00Z ({reason})" in err
        assert "restart the ramp with --force" in err
        assert project.read_bytes() == rolled_back
    code, out, _ = run("status", "--config", str(project), "--now", later, "--metrics", metrics)
    assert code == EXIT_HOLD
    assert "stage:      rolled back (no user on the candidate)" in out
    assert f"rollback:   rolled back at 2026-11-26T10:00:00Z: {reason}; advance needs" in out

    code, out, err = run("advance", "--force", "--config", str(project), "--now", later)
    assert code == EXIT_OK
    assert "forcing the advance" in err
    assert "canary_pct 0.0 (0%) -> 0.01 (1%)" in out
    table = canary_table(project)
    assert table["canary_pct"] == 0.01
    assert table["rollback_reason"] == reason  # the record stays, as history
    code, out, _ = run("status", "--config", str(project), "--now", later)
    assert "last rolled back at 2026-11-26T10:00:00Z: refusals up 3x (restarted since)" in out
    # The ramp goes on under the controller's usual rules.
    code, _, err = run("advance", "--config", str(project), "--now", later, "--metrics", metrics)
    assert code == EXIT_HOLD
    assert "0.0 h of the required 24 h" in err


def test_rollback_needs_a_reason(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["rollback", "--config", str(project)], ["rollback", "--reason", "  "]):
        with pytest.raises(SystemExit) as info:
            canary_cli.main(argv)
        assert info.value.code == EXIT_USAGE
        assert "--reason" in capsys.readouterr().err
    assert project.read_bytes() == PYPROJECT.encode()


@pytest.mark.parametrize(
    "reason",
    [
        'said "no" to C:\\temp',
        "two\nlines\tand a tab",
        "bell \x07 and del \x7f",
        "émojis 🚨 and # not a comment",
        "ends with a backslash \\",
    ],
)
def test_any_reason_round_trips(project: Path, run: Run, reason: str) -> None:
    code, out, _ = run("rollback", "--config", str(project), "--now", NOW, "--reason", reason)
    assert code == EXIT_OK
    assert canary_table(project)["rollback_reason"] == reason.strip()
    # The message shows the line as written to the file.
    [line] = [x for x in project.read_text().splitlines() if x.lstrip().startswith("rollback_")]
    assert f"Recorded {line.strip()} and rolled_back_at = " in out
    assert tomllib.loads(line)["rollback_reason"] == reason.strip()


def test_rollback_in_llmregress_toml_with_crlf_and_quoted_date(tmp_path: Path, run: Run) -> None:
    text = (
        "# canary for the chat role\r\n"
        "[canary]\r\n"
        "production = 'claude-sonnet-4-6'\r\n"
        'candidate = "claude-opus-4-7"\r\n'
        'experiment_id = "exp1"\r\n'
        '"canary_pct" = 0.025\r\n'
        'stage_started_at = "2026-11-20T00:00:00+01:00"  # quoted on purpose\r\n'
        "stages = [{pct = 0.025, min_hours = 1, max_regression_rate = 0.1}]\r\n"
    )
    path = tmp_path / "llmregress.toml"
    path.write_bytes(text.encode())
    code, _, _ = run("rollback", "--config", str(path), "--now", NOW, "--reason", "r")
    assert code == EXIT_OK
    expected = (
        text.replace('"canary_pct" = 0.025', '"canary_pct" = 0.0')
        .replace("2026-11-20T00:00:00+01:00", "2026-11-26T10:00:00Z")
        .replace(
            "quoted on purpose\r\n",
            "quoted on purpose\r\nrolled_back_at = 2026-11-26T10:00:00Z\r\n"
            'rollback_reason = "r"\r\n',
        )
    )
    assert path.read_bytes() == expected.encode()


def test_missing_stage_started_at_is_added_after_canary_pct(tmp_path: Path, run: Run) -> None:
    text = PYPROJECT.replace(STARTED_LINE, "")
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    assert run("advance", "--force", "--config", str(path), "--now", NOW)[0] == EXIT_OK
    old, new = text.splitlines(keepends=True), path.read_text().splitlines(keepends=True)
    index = old.index(PCT_LINE)
    assert new[index] == PCT_LINE.replace("0.05", "0.25")
    assert new[index + 1] == "  stage_started_at = 2026-11-26T10:00:00Z\n"
    assert new[:index] == old[:index]
    assert new[index + 2 :] == old[index + 1 :]


def test_keys_are_added_on_a_last_line_without_newline(tmp_path: Path, run: Run) -> None:
    text = '[canary]\nproduction = "p-1"\ncandidate = "c-1"\nexperiment_id = "e"\ncanary_pct = 0.2'
    path = tmp_path / "llmregress.toml"
    path.write_text(text)
    assert run("rollback", "--config", str(path), "--now", NOW, "--reason", "r")[0] == EXIT_OK
    assert path.read_text() == text.replace("0.2", "0.0") + (
        "\nstage_started_at = 2026-11-26T10:00:00Z\nrolled_back_at = 2026-11-26T10:00:00Z\n"
        'rollback_reason = "r"'
    )


def test_refuses_a_table_it_cannot_edit_line_by_line(tmp_path: Path, run: Run) -> None:
    text = (
        "[tool.llmregress]\n"
        'canary = {production = "claude-sonnet-4-6", candidate = "claude-opus-4-7", '
        'experiment_id = "e", canary_pct = 0.05, '
        "stages = [{pct = 0.05, min_hours = 1, max_regression_rate = 0.1}]}\n"
    )
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    code, _, err = run("rollback", "--config", str(path), "--now", NOW, "--reason", "r")
    assert code == EXIT_ERROR
    assert "nothing was written" in err
    assert path.read_text() == text
    assert os.listdir(tmp_path) == ["pyproject.toml"]


def test_comments_and_odd_spacing_survive_byte_for_byte() -> None:
    # Everything but the edited values is kept: comments on their own lines and after values,
    # tabs, blank lines holding spaces, an indented header, quoted keys, a literal-quoted date,
    # a multi-line array, trailing spaces, and the file's CRLF line endings.
    text = (
        "#!comment before everything\r\n"
        "\r\n"
        "  [ canary ]   # the header, indented\r\n"
        "\tproduction\t=\t'claude-sonnet-4-6'\r\n"
        "  \r\n"
        "    # why the candidate:\r\n"
        '    "candidate"="claude-opus-4-7"   \r\n'
        '    experiment_id = """e"""\r\n'
        "    'canary_pct'\t=   0.05\t# edited by the CLI\r\n"
        "    stages = [  # one stage\r\n"
        "      {pct = 0.05, min_hours = 1, max_regression_rate = 0.1},\r\n"
        "    ]\r\n"
        "    stage_started_at='2026-11-25T08:00:00Z'#quoted\r\n"
        "\r\n"
        "# the end\r\n"
    )
    when = datetime(2026, 11, 26, 10, tzinfo=UTC)
    new = edit_canary_text(text, Path("llmregress.toml"), 0.0, when, rollback_reason="why")
    assert new == text.replace("0.05\t#", "0.0\t#").replace(
        "'2026-11-25T08:00:00Z'#quoted\r\n",
        "'2026-11-26T10:00:00Z'#quoted\r\n"
        "    rolled_back_at = 2026-11-26T10:00:00Z\r\n"
        '    rollback_reason = "why"\r\n',
    )


def test_a_table_split_by_another_table_is_edited_in_place(tmp_path: Path, run: Run) -> None:
    text = PYPROJECT.replace(
        "min_requests = 100\n\n", 'min_requests = 100\n\n[project.urls]\nhome = "https://x"\n\n'
    )
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    assert run("rollback", "--config", str(path), "--now", NOW, "--reason", "r")[0] == EXIT_OK
    assert path.read_text() == text.replace(PCT_LINE, PCT_LINE.replace("0.05", "0.0")).replace(
        STARTED_LINE,
        "stage_started_at = 2026-11-26T10:00:00Z\n"
        "  rolled_back_at = 2026-11-26T10:00:00Z\n"
        '  rollback_reason = "r"\n',
    )


def test_a_recorded_reason_is_replaced_whatever_its_quoting(tmp_path: Path, run: Run) -> None:
    # A reason written by hand as a multi-line string is replaced whole (on one line now).
    earlier = "rolled_back_at = 2026-11-01T00:00:00Z\nrollback_reason = '''first\nsecond'''\n"
    text = PYPROJECT.replace(STARTED_LINE, STARTED_LINE + earlier)
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    code, out, _ = run("rollback", "--config", str(path), "--now", NOW, "--reason", "a\tb\nc")
    assert code == EXIT_OK
    assert 'Recorded rollback_reason = "a\\tb\\nc" and rolled_back_at' in out
    assert path.read_text() == text.replace(PCT_LINE, PCT_LINE.replace("0.05", "0.0")).replace(
        STARTED_LINE + earlier,
        "stage_started_at = 2026-11-26T10:00:00Z\n"
        "rolled_back_at = 2026-11-26T10:00:00Z\n"
        'rollback_reason = "a\\tb\\nc"\n',
    )
    assert canary_table(path)["rollback_reason"] == "a\tb\nc"


def test_refuses_a_table_made_of_dotted_keys(tmp_path: Path, run: Run) -> None:
    text = (
        "[tool.llmregress]\n"
        'canary.production = "claude-sonnet-4-6"\n'
        'canary.candidate = "claude-opus-4-7"\n'
        'canary.experiment_id = "e"\n'
        "canary.canary_pct = 0.05\n"
        "canary.stages = [{pct = 0.05, min_hours = 1, max_regression_rate = 0.1}]\n"
    )
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    code, _, err = run("rollback", "--config", str(path), "--now", NOW, "--reason", "r")
    assert code == EXIT_ERROR
    assert "no [tool.llmregress.canary] table header; nothing was written" in err
    assert path.read_text() == text


def test_lines_inside_multiline_strings_are_not_keys() -> None:
    text = (
        '[canary]\nproduction = """\ncanary_pct = 0.01\n[canary]\n"""\n'
        'candidate = "claude-opus-4-7"\nexperiment_id = "e"\ncanary_pct = 0.05\n'
        "stages = [{pct = 0.05, min_hours = 1, max_regression_rate = 0.1}]\n"
    )
    when = datetime(2026, 11, 26, tzinfo=UTC)
    new = edit_canary_text(text, Path("llmregress.toml"), 0.0, when)
    assert new == text.replace(
        "canary_pct = 0.05\n", "canary_pct = 0.0\nstage_started_at = 2026-11-26T00:00:00Z\n"
    )


def test_edit_is_verified_by_reparsing() -> None:
    # An edit that would change anything else is refused, whatever the line parser thought.
    text = (
        '[canary]\nproduction = "claude-sonnet-4-6"\ncandidate = "claude-opus-4-7"\n'
        "experiment_id = 'e'\ncanary_pct = 0.05\n"
        "stages = [{pct = 0.05, min_hours = 1, max_regression_rate = 0.1}]\n"
    )
    when = datetime(2026, 11, 26, tzinfo=UTC)
    path = Path("llmregress.toml")
    edited = edit_canary_text(text, path, 0.0, when)
    with pytest.raises(CanaryEditError, match="more than canary_pct and stage_started_at"):
        _verify(text, edited.replace("'e'", "'f'"), path, 0.0, when)
    with pytest.raises(CanaryEditError, match="would not parse"):
        _verify(text, edited + "[canary\n", path, 0.0, when)
    with pytest.raises(CanaryEditError, match="as intended"):
        _verify(text, edited, path, 0.01, when)
    rolled = edit_canary_text(text, path, 0.0, when, rollback_reason="why")
    _verify(text, rolled, path, 0.0, when, rollback_reason="why")
    with pytest.raises(CanaryEditError, match="as intended"):
        _verify(text, rolled, path, 0.0, when, rollback_reason="other")
    with pytest.raises(CanaryEditError, match="rolled_back_at and rollback_reason"):
        _verify(text, rolled.replace("'e'", "'f'"), path, 0.0, when, rollback_reason="why")


def test_failed_write_leaves_the_file_and_no_temp_file(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = project.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    code, _, err = run("rollback", "--config", str(project), "--now", NOW, "--reason", "r")
    assert code == EXIT_ERROR
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
    assert code == EXIT_ERROR
    assert "errors (9) cannot exceed requests (5)" in err
    unknown = metrics_file(tmp_path, {"treatment": {}}, "unknown.json")
    assert run("status", "--config", str(project), "--metrics", unknown)[0] == EXIT_ERROR
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run("status", "--config", str(empty / "pyproject.toml"))
    assert code == EXIT_ERROR
    assert "cannot read" in err


def test_a_percentage_from_before_fractions_is_refused_with_a_hint(
    tmp_path: Path, run: Run
) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(PYPROJECT.replace("=  0.05     #", "=  5     #"))
    code, _, err = run("advance", "--force", "--config", str(path), "--now", NOW)
    assert code == EXIT_ERROR
    assert f"{path}: tool.llmregress.canary.canary_pct: " in err
    assert 'for 5% write 0.05 or "5%"' in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["status", "--now", "tomorrow"], ["promote"]):
        with pytest.raises(SystemExit) as info:
            canary_cli.main(argv)
        assert info.value.code == EXIT_USAGE
    capsys.readouterr()
