"""``llmregress compare`` and ``llmregress history`` on results files written to tmp_path."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_llmregress import cli
from pytest_llmregress.cli.compare import main, parse_margin
from pytest_llmregress.prompts.library import PromptLibrary, parse_prompt_yaml, prompts_metadata
from pytest_llmregress.providers.base import Completion
from pytest_llmregress.scoring.score import Score
from pytest_llmregress.verdict import results as results_module
from pytest_llmregress.verdict.results import CaseResult, Outcome, RunResult

PRODUCTION = "anthropic:claude-sonnet-4-6"
CANDIDATE = "anthropic:claude-sonnet-5"
JUDGE = "gpt-5.5-2026-04-23"


def _case(index: int, outcome: Outcome, model: str, resolved: str | None) -> CaseResult:
    value = 0.9 if outcome == "passed" else 0.2
    completion = Completion(
        text=f"answer {index}",
        provider="anthropic",
        requested_model=model,
        resolved_model=resolved or model,
    )
    return CaseResult(
        case_id=f"case-{index:03d}",
        nodeid=f"golden_cases/support.yaml::case-{index:03d}",
        path="golden_cases/support.yaml",
        line=index + 1,
        outcome=outcome,
        threshold=0.5,
        scores=()
        if outcome == "error"
        else (Score("judge", value, outcome == "passed", "reason", 0.5, JUDGE),),
        output=None if outcome == "error" else f"answer {index}",
        completion=None if outcome == "error" else completion,
        error="timeout" if outcome == "error" else None,
    )


def run_of(
    passed: Sequence[bool] | int,
    *,
    n: int = 300,
    candidate: str = PRODUCTION,
    started_at: str | None = "2026-05-01T06:00:00+00:00",
    resolved: str | None = None,
) -> RunResult:
    flags = [i < passed for i in range(n)] if isinstance(passed, int) else list(passed)
    model = candidate.partition(":")[2]
    metadata: dict[str, object] = {"candidate": candidate}
    if started_at is not None:
        metadata["started_at"] = started_at
    return RunResult(
        metadata=metadata,
        cases=[
            _case(i, "passed" if ok else "failed", model, resolved) for i, ok in enumerate(flags)
        ],
    )


def write(path: Path, run: RunResult) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run.to_dict()))
    return str(path)


def write_partial(path: Path, run: RunResult) -> str:
    """What an interrupted run leaves behind instead of ``path``: a journal (a header line,
    then one line per case) where results.py puts it (``PATH.partial/<process>.jsonl``, or
    ``PATH.partial.jsonl`` in the single-file layout). Returns the journal's path."""
    journal_dir = getattr(results_module, "journal_dir", None)
    if journal_dir is not None:
        target = Path(journal_dir(path)) / "main.jsonl"
    else:
        target = Path(results_module.partial_path(path))  # type: ignore[attr-defined, unused-ignore]
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"kind": "header", "version": 1, "metadata": run.metadata})]
    lines += [json.dumps({"kind": "case", "case": c.to_dict()}) for c in run.cases]
    target.write_text("\n".join(lines) + "\n")
    return str(target)


def regressed() -> list[bool]:
    """10 points worse than run_of(255): 36 pass->fail, 6 fail->pass."""
    flags = [i < 255 for i in range(300)]
    for i in range(36):
        flags[i] = False
    for i in range(255, 261):
        flags[i] = True
    return flags


# --- compare ---------------------------------------------------------------------------------


def test_compare_regression_text_and_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path / "a.json", run_of(255))
    b = write(tmp_path / "b.json", run_of(regressed(), candidate=CANDIDATE))
    assert main(["compare", a, b]) == 0
    out = capsys.readouterr().out
    assert "REGRESSION: anthropic:claude-sonnet-5 against anthropic:claude-sonnet-4-6" in out
    assert "36 pass->fail, 6 fail->pass" in out
    assert "smallest detectable drop" in out
    assert main(["compare", a, b, "--fail-on-regression", "--resamples", "200"]) == 1
    capsys.readouterr()
    # A generous margin turns the same data into "within noise".
    assert (
        main(
            [
                "compare",
                a,
                b,
                "--fail-on-regression",
                "--max-regression",
                "15",
                "--resamples",
                "200",
            ]
        )
        == 0
    )
    assert "WITHIN NOISE" in capsys.readouterr().out


def test_compare_a_a_and_one_point_drop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path / "a.json", run_of(255))
    same = write(tmp_path / "same.json", run_of(255))
    assert main(["compare", a, same, "--fail-on-regression", "--resamples", "200"]) == 0
    assert "WITHIN NOISE" in capsys.readouterr().out
    flags = [i < 255 for i in range(300)]
    for i in range(6):
        flags[i] = False
    for i in range(255, 258):
        flags[i] = True
    drop = write(tmp_path / "drop.json", run_of(flags))
    assert main(["compare", a, drop, "--fail-on-regression", "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "WITHIN NOISE" in out
    assert "pass rate fell by 1.0 point " in out
    assert "smallest detectable drop: " in out


def test_fail_on_regression_fails_when_nothing_is_paired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path / "a.json", run_of(8, n=10))
    broken = run_of(8, n=10, candidate=CANDIDATE)
    broken.cases = [_case(i, "error", "claude-sonnet-5", None) for i in range(10)]
    b = write(tmp_path / "b.json", broken)
    assert main(["compare", a, b]) == 0
    assert main(["compare", a, b, "--fail-on-regression"]) == 1
    assert "no case was scored in both runs" in capsys.readouterr().err


def test_compare_labels_a_run_by_its_model_else_by_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alias = write(
        tmp_path / "alias.json",
        run_of(8, n=10, candidate="anthropic:claude-sonnet-latest", resolved="claude-sonnet-4-6"),
    )
    legacy_run = run_of(8, n=10, candidate=CANDIDATE)
    legacy_run.metadata = {}
    legacy = write(tmp_path / "legacy.json", legacy_run)
    assert main(["compare", alias, legacy, "--resamples", "0"]) == 0
    out = capsys.readouterr().out
    assert (
        f"WITHIN NOISE: {legacy} against anthropic:claude-sonnet-latest (answered as "
        "claude-sonnet-4-6) on 10 paired cases"
    ) in out
    assert main(["compare", alias, legacy, "--format", "json", "--resamples", "0"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["baseline"]["model"] == "anthropic:claude-sonnet-latest"
    assert document["baseline"]["answered_as"] == {"claude-sonnet-4-6": 10}
    assert (document["candidate"]["label"], document["candidate"]["model"]) == (legacy, None)


def test_compare_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path / "a.json", run_of(255))
    b = write(tmp_path / "b.json", run_of(regressed(), candidate=CANDIDATE))
    assert main(["compare", a, b, "--format", "json", "--seed", "3"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["verdict"] == "regression"
    assert document["significant"] is True
    assert document["margin_exceeded"] is True
    assert document["score_delta"]["seed"] == 3
    assert document["files"] == {"baseline": a, "candidate": b}
    assert document["min_detectable_effect"] > 0


def test_compare_markdown_and_step_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write(tmp_path / "a.json", run_of(255))
    b = write(tmp_path / "b.json", run_of(regressed(), candidate=CANDIDATE))
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    assert (
        main(
            [
                "compare",
                a,
                b,
                "--format",
                "markdown",
                "--markdown",
                str(summary),
                "--resamples",
                "200",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("## ❌ LLM regression check: regression")
    written = summary.read_text()
    assert written.startswith("# earlier step\n## ❌")  # appended, not overwritten


def test_compare_reads_partial_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path / "a.json", run_of(255))
    interrupted = run_of(regressed(), candidate=CANDIDATE)
    interrupted.cases = interrupted.cases[:200]
    partial = write_partial(tmp_path / "b.json", interrupted)
    assert partial.endswith(".jsonl")
    assert main(["compare", a, partial, "--format", "json", "--resamples", "200"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["paired_cases"] == 200
    assert len(document["only_baseline"]) == 100
    # The final name works too when only the partial results exist.
    assert (
        main(["compare", a, str(tmp_path / "b.json"), "--format", "json", "--resamples", "200"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["paired_cases"] == 200


PROMPTS = PromptLibrary(
    parse_prompt_yaml(
        "task: support-answer\nversions:\n  default: Answer.\n"
        "  claude-sonnet-4-6: Answer briefly.\n  claude-sonnet-5: Answer in one line.\n",
        "prompts/support.yaml",
    ),
    source="prompts",
)


def with_prompts(run: RunResult, prompts_for: str, started_at: str) -> RunResult:
    """``run`` as the plugin records it when its prompts were written for ``prompts_for``."""
    own = str(run.metadata["candidate"]).partition(":")[2]
    forced = None if prompts_for == own else prompts_for
    run.metadata.update(prompts_metadata(PROMPTS, prompts_for, prompt_model=forced))
    run.metadata["started_at"] = started_at
    return run


def attribution_files(folder: Path) -> list[str]:
    """old_old, old_new, new_old, new_new: the old model 90%, the new one 80%, any prompt."""
    old, new = PRODUCTION.partition(":")[2], CANDIDATE.partition(":")[2]
    cells = [
        ("old_old", 180, PRODUCTION, old),
        ("old_new", 180, PRODUCTION, new),
        ("new_old", 160, CANDIDATE, old),
        ("new_new", 160, CANDIDATE, new),
    ]
    return [
        write(
            folder / f"{name}.json",
            with_prompts(
                run_of(passed, n=200, candidate=model), prompts_for, f"2026-05-0{i + 1}T06:00:00Z"
            ),
        )
        for i, (name, passed, model, prompts_for) in enumerate(cells)
    ]


def test_compare_attribute(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = attribution_files(tmp_path)
    assert main(["compare", "--resamples", "200", "--attribute", *paths]) == 0
    out = capsys.readouterr().out
    assert "attribution over 200 cases" in out
    digest = json.loads(Path(paths[2]).read_text())["metadata"]["prompts"]["digest"]
    assert f"  new model, old prompt  80.0%  ({CANDIDATE}, prompts {digest[:12]})" in out
    assert "model effect -10.0 points (significant" in out
    assert "attributable to the model" in out
    assert main(["compare", "--resamples", "200", "--attribute", *paths, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["model"]["estimate"] == pytest.approx(-0.1)
    assert document["prompts"]["new_model_old_prompt"] == {
        "digest": digest,
        "model": "claude-sonnet-4-6",
        "prompt_model": "claude-sonnet-4-6",
    }
    assert (
        main(["compare", "--resamples", "200", "--attribute", *paths, "--format", "markdown"]) == 0
    )
    assert "| Model effect | -10.0 pts |" in capsys.readouterr().out


def test_compare_attribute_refuses_swapped_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_old, old_new, new_old, new_new = attribution_files(tmp_path)
    summary = tmp_path / "summary.md"
    argv = [
        "compare",
        "--attribute",
        old_old,
        new_old,
        old_new,
        new_new,
        "--markdown",
        str(summary),
    ]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert not summary.exists()
    lines = captured.err.splitlines()
    assert lines[0] == (
        "llmregress: the four runs do not form the 2x2 of an attribution (in order: old model + "
        "old prompt, old model + new prompt, new model + old prompt, new model + new prompt):"
    )
    assert lines[1].startswith(f"  - {new_old} and {old_new} are swapped: {new_old} (")
    assert lines[1].endswith(f"give them in the order {old_old} {old_new} {new_old} {new_new}")
    assert len(lines) == 2


def test_compare_attribute_refuses_old_results_and_other_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, old_new, new_old, new_new = attribution_files(tmp_path)
    legacy = write(tmp_path / "legacy.json", run_of(180, n=200))  # no prompt metadata
    assert main(["compare", "--attribute", legacy, old_new, new_old, new_new]) == 2
    assert (
        f"  - {legacy} does not record its prompt version; rerun it with pytest-llmregress >= "
        in capsys.readouterr().err
    )
    shorter = with_prompts(run_of(180, n=199), "claude-sonnet-4-6", "2026-05-09T06:00:00Z")
    short = write(tmp_path / "short.json", shorter)
    assert main(["compare", "--attribute", short, old_new, new_old, new_new]) == 2
    assert (
        f"  - 1 case missing from {short}: golden_cases/support.yaml::case-199; the four runs "
        "must hold the same cases"
    ) in capsys.readouterr().err.splitlines()


def test_compare_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path / "a.json", run_of(5, n=10))
    assert main(["compare", a]) == 2
    assert "give two results files" in capsys.readouterr().err
    assert main(["compare", a, str(tmp_path / "missing.json")]) == 2
    assert "cannot read results" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"version": 99}')
    assert main(["compare", a, str(tmp_path / "bad.json")]) == 2
    assert "results version 99" in capsys.readouterr().err
    assert main(["compare", a, a, "--alpha", "2"]) == 2
    assert main(["compare", "--help"]) == 0
    assert "--max-regression" in capsys.readouterr().out
    assert main(["other"]) == 2


def test_parse_margin() -> None:
    assert parse_margin("0.05") == pytest.approx(0.05)
    assert parse_margin("5") == pytest.approx(0.05)
    assert parse_margin("5%") == pytest.approx(0.05)
    assert parse_margin("0.5%") == pytest.approx(0.005)
    assert parse_margin("0") == 0.0
    for bad in ("x", "-1", "150"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"margin|number"):
            parse_margin(bad)


def test_dispatch_through_llmregress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path / "a.json", run_of(255))
    b = write(tmp_path / "b.json", run_of(regressed(), candidate=CANDIDATE))
    assert cli.main(["compare", a, b, "--fail-on-regression", "--resamples", "200"]) == 1
    assert cli.main(["history", str(tmp_path)]) == 0
    assert "claude-sonnet-4-6" in capsys.readouterr().out


# --- history ---------------------------------------------------------------------------------


def make_history(folder: Path) -> None:
    """Four weekly runs of production, written out of order, plus one candidate run."""
    write(
        folder / "2026-05-15.json",
        run_of(
            regressed(), started_at="2026-05-15T06:00:00+00:00", resolved="claude-sonnet-4-6-0301"
        ),
    )
    write(folder / "2026-05-01.json", run_of(255, started_at="2026-05-01T06:00:00+00:00"))
    write(folder / "nested" / "2026-05-08.json", run_of(256, started_at="2026-05-08T06:00:00Z"))
    write(
        folder / "candidate.json",
        run_of(260, candidate=CANDIDATE, started_at="2026-05-09T06:00:00+00:00"),
    )
    interrupted = run_of(
        regressed(), started_at="2026-05-22T06:00:00+00:00", resolved="claude-sonnet-4-6-0301"
    )
    interrupted.cases = interrupted.cases[:100]
    write_partial(folder / "2026-05-22.json", interrupted)
    (folder / "notes.json").write_text('{"not": "results"}')


def test_history_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_history(tmp_path)
    assert main(["history", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "anthropic:claude-sonnet-4-6 (4 runs)" in out
    assert "anthropic:claude-sonnet-5 (1 runs)" in out
    production = out.split("anthropic:claude-sonnet-5")[0]
    order = [production.index(name) for name in ("2026-05-01", "2026-05-08", "2026-05-15")]
    assert order == sorted(order)
    assert "85.0%" in production
    assert "85.3%" in production
    assert "+0.3 pts" in production
    assert (
        "! alias moved: anthropic:claude-sonnet-4-6 resolved to claude-sonnet-4-6 x300 in the "
        "previous run but claude-sonnet-4-6-0301 x300 in this run"
    ) in out
    assert "significant drop vs previous run" in out
    assert "interrupted run (partial results)" in out
    assert "skipped" in captured.err
    assert "notes.json" in captured.err


def test_history_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_history(tmp_path)
    assert main(["history", str(tmp_path), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    runs = document["runs"]
    assert [r["started_at"][:10] for r in runs] == [
        "2026-05-01",
        "2026-05-08",
        "2026-05-09",
        "2026-05-15",
        "2026-05-22",
    ]
    assert runs[1]["file"] == str(Path("nested") / "2026-05-08.json")
    production = document["models"][PRODUCTION]
    assert len(production) == 4
    assert production[0]["change"] is None
    assert production[2]["change"] == pytest.approx(0.75 - 256 / 300)
    assert production[2]["p_value"] < 0.001
    assert any("alias moved" in flag for flag in production[2]["flags"])
    assert not any("alias moved" in flag for flag in production[3]["flags"])
    assert production[3]["partial"] is True
    assert production[0]["mean_score"] == pytest.approx((255 * 0.9 + 45 * 0.2) / 300)


def test_history_markdown_and_edges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_history(tmp_path)
    assert main(["history", str(tmp_path), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## LLM golden suite history")
    assert "| `anthropic:claude-sonnet-5` |" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["history", str(empty)]) == 0
    assert "no results files" in capsys.readouterr().out
    assert main(["history", str(tmp_path / "missing")]) == 2


def test_history_skips_copies_of_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_of(6, n=10, started_at="2026-01-01T00:00:00+00:00")
    write(tmp_path / "runs" / "2026-01-01.json", run)
    write(tmp_path / "accepted.json", run)
    assert main(["history", str(tmp_path), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["runs"]) == 1
    assert "the same run as" in captured.err


def test_history_runs_without_a_date_go_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.json", run_of(5, n=10, started_at=None))
    write(tmp_path / "b.json", run_of(6, n=10, started_at="2026-01-01T00:00:00+00:00"))
    assert main(["history", str(tmp_path), "--format", "json"]) == 0
    captured = capsys.readouterr()
    runs = json.loads(captured.out)["runs"]
    assert [r["file"] for r in runs] == ["b.json", "a.json"]
    assert "no metadata.started_at" in captured.err
