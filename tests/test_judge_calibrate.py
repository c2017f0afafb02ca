"""``llmregress judge calibrate``: the judge measured against people, over real HTTP.

The labels are ``tests/data/judge_labels.jsonl``: 70 cases whose ``note`` names a group. The
local server's judge scores a candidate by its similarity to the reference (the difflib ratio
of the lower-cased texts, ``docs/local-server.md``), so every judge verdict is known: an
output equal to its reference scores 1.0, an unrelated one below 0.5, a paraphrase between 0.5
and 0.85. Some cases are labelled against the judge on purpose:

- ``agree-pass`` (30) and ``agree-fail`` (24): the judge and people agree;
- ``false-pass`` (4): the reference itself, labelled fail by people;
- ``false-fail`` (4): an unrelated output, labelled pass by people;
- ``paraphrase`` (6): labelled pass; below the default threshold 0.85, so false fails there,
  while a threshold at the lowest paraphrase's score agrees better;
- ``judge-error`` (2): the server answers the judge with an error: counted apart.

The expected numbers are computed here from those groups, with statsmodels for Cohen's kappa.
"""

from __future__ import annotations

import datetime as dt
import difflib
import importlib
import itertools
import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_llmregress import cli
from pytest_llmregress.cli.judge import main
from pytest_llmregress.scoring.judge import JUDGE_PROMPT_VERSION
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.calibration import (
    Calibration,
    CalibrationStoreError,
    LabelsFileError,
    calibration_key,
    calibration_line,
    find_calibration,
    load_calibrations,
    load_labels,
    save_calibration,
)

inter_rater: Any
krippendorff: Any
try:
    inter_rater = importlib.import_module("statsmodels.stats.inter_rater")
except ImportError:  # pragma: no cover - optional: the hand formulas still run
    inter_rater = None
try:
    krippendorff = importlib.import_module("krippendorff")
except ImportError:  # pragma: no cover
    krippendorff = None

JUDGE = "gpt-5.5-2026-04-23"
LABELS = Path(__file__).parent / "data" / "judge_labels.jsonl"
KEY = f"openai:{JUDGE}@{JUDGE_PROMPT_VERSION}"
SECRETS = ("sk-ant-test-secret-0001", "sk-test-secret-0002")
SCENARIO: dict[str, Any] = {
    "models": {
        JUDGE: {
            "judge": True,
            "errors": [{"status": 400, "match": "unjudgeable", "message": "cannot grade this"}],
        }
    }
}
StartServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]


def rows(path: Path = LABELS) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("//")]


def similarity(reference: str, output: str) -> float:
    """The local judge's score, as docs/local-server.md defines it."""
    a, b = (" ".join(text.split()).lower() for text in (reference, output))
    return round(difflib.SequenceMatcher(None, a, b).ratio(), 3)


def people_pass(row: dict[str, Any]) -> bool:
    label = row["label"]
    return label is True or label == "pass"


def judged_rows() -> list[tuple[dict[str, Any], float]]:
    return [
        (row, similarity(row["reference"], row["output"]))
        for row in rows()
        if row["note"] != "judge-error"
    ]


def confusion(people: list[bool], judge: list[bool]) -> list[list[int]]:
    """The 2x2 table: rows people pass/fail, columns judge pass/fail."""
    pairs = list(zip(people, judge, strict=True))
    return [
        [sum(1 for p, j in pairs if (p, j) == (a, b)) for b in (True, False)] for a in (True, False)
    ]


def kappa_of(people: list[bool], judge: list[bool]) -> float:
    """Cohen's kappa written out from the table: (p_o - p_e) / (1 - p_e)."""
    (tp, ff), (fp, tf) = confusion(people, judge)
    n = tp + ff + fp + tf
    observed = (tp + tf) / n
    expected = ((tp + fp) * (tp + ff) + (ff + tf) * (fp + tf)) / (n * n)
    return (observed - expected) / (1 - expected)


def interval_alpha(a: list[float], b: list[float]) -> float:
    """Krippendorff's alpha (interval) of two raters with no missing value, written out:
    D_o is the mean squared difference within units, D_e over all pairs of values."""
    values = a + b
    n = len(values)
    observed = sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / len(a)
    expected = sum((x - y) ** 2 for x, y in itertools.permutations(values, 2)) / (n * (n - 1))
    return 1 - observed / expected


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def _score_pairs() -> tuple[list[float], list[float]]:
    """People's scores and the judge's, on the judged cases that have a people's score."""
    pairs = [(float(row["score"]), score) for row, score in judged_rows() if "score" in row]
    return [p for p, _ in pairs], [s for _, s in pairs]


@pytest.mark.skipif(inter_rater is None, reason="statsmodels not installed")
def test_the_hand_kappa_is_statsmodels_kappa() -> None:
    judged = judged_rows()
    people = [people_pass(row) for row, _ in judged]
    for threshold in sorted({score for _, score in judged}):
        verdicts = [score >= threshold for _, score in judged]
        with warnings.catch_warnings():  # its z-value of a one-sided table divides by 0
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = float(inter_rater.cohens_kappa(confusion(people, verdicts)).kappa)
        assert kappa_of(people, verdicts) == pytest.approx(expected)


@pytest.mark.skipif(krippendorff is None, reason="krippendorff not installed")
def test_the_hand_alpha_is_the_krippendorff_package_alpha() -> None:
    people, judge = _score_pairs()
    expected = krippendorff.alpha(reliability_data=[people, judge], level_of_measurement="interval")
    assert interval_alpha(people, judge) == pytest.approx(float(expected))


@pytest.fixture
def judge_server(make_server: StartServer, provider_env: PointEnv) -> LocalProviderServer:
    server = make_server(SCENARIO)
    provider_env(server)
    return server


def test_the_labels_fixture_is_what_the_tests_assume() -> None:
    data = rows()
    assert len(data) >= 60
    groups = {note: [r for r in data if r["note"] == note] for note in {r["note"] for r in data}}
    assert {name: len(items) for name, items in groups.items()} == {
        "agree-pass": 30,
        "agree-fail": 24,
        "false-pass": 4,
        "false-fail": 4,
        "paraphrase": 6,
        "judge-error": 2,
    }
    for row, score in judged_rows():
        if row["note"] in ("agree-pass", "false-pass"):
            assert score == 1.0
        elif row["note"] == "paraphrase":
            assert 0.5 <= score < 0.85
        else:
            assert score < 0.5
    # Both ways of writing a label and the task occur; the loader reads them all.
    assert {type(r["label"]) for r in data} == {bool, str}
    assert any("user" in r for r in data)
    assert any("task" in r for r in data)
    labels = load_labels(LABELS)
    assert [label.id for label in labels] == [r["id"] for r in data]
    assert [label.passed for label in labels] == [people_pass(r) for r in data]


def test_calibrate_reports_agreement_known_in_advance(
    judge_server: LocalProviderServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    before = today()
    assert main(["calibrate", str(LABELS), "--judge-model", JUDGE]) == 0
    dates = {before, today()}  # the run may cross midnight
    out, err = capsys.readouterr()
    assert err == ""

    judged = judged_rows()
    people = [people_pass(row) for row, _ in judged]
    verdicts = [score >= 0.85 for _, score in judged]
    kappa = kappa_of(people, verdicts)
    # 30 true passes, 4 false passes, 4 + 6 false fails, 24 true fails: by the groups.
    assert kappa == pytest.approx((54 / 68 - 0.5) / (1 - 0.5))
    paraphrases = [s for row, s in judged if row["note"] == "paraphrase"]
    best = min(paraphrases)
    best_kappa = kappa_of(people, [score >= best for _, score in judged])
    assert best_kappa == pytest.approx(1696 / 2240)
    for t in {s for _, s in judged} - {best}:  # the best threshold really is the best
        assert kappa_of(people, [s >= t for _, s in judged]) < best_kappa

    lines = out.splitlines()
    assert lines[0] == (
        f"judge {JUDGE} (openai:{JUDGE}), judge prompt v{JUDGE_PROMPT_VERSION}, threshold 0.85"
    )
    assert lines[1:7] == [
        f"labels: {LABELS}: 68 cases judged (2 judge errors, not counted)",
        f"Cohen's κ: {kappa:.3f} (moderate)",
        "agreement: 0.794 (54 of 68)",
        '"pass": precision 0.882, recall 0.750 (judge passes 34, people pass 40; '
        "4 false passes, 10 false fails)",
        f"best threshold: {best:g} (κ {best_kappa:.3f} there)",
        "people's scores vs the judge's: Krippendorff's α (interval) "
        f"{interval_alpha(*_score_pairs()):.3f} on 60 cases",
    ]
    # The disagreements, worst first: the judge's score farthest from the threshold.
    wrong = sorted(
        (
            (abs(score - 0.85), row["id"], people_pass(row), score)
            for (row, score), verdict in zip(judged, verdicts, strict=True)
            if verdict != people_pass(row)
        ),
        key=lambda item: (-item[0], item[1]),
    )
    assert lines[7] == "disagreements (14, worst first):"
    shown = lines[8 : 8 + 14]
    assert [line.split(":")[0].strip() for line in shown] == [item[1] for item in wrong]
    _, first_id, _, first_score = wrong[0]
    assert first_id.startswith("false-fail")
    assert shown[0].startswith(
        f"  {first_id}: people pass, judge fail ({first_score:.3f} < 0.85): The candidate "
        "differs from the reference"
    )
    false_pass = next(line for line in shown if "false-pass-01" in line)
    assert false_pass.startswith("  false-pass-01: people fail, judge pass (1.000 >= 0.85): ")
    assert lines[22:25] == [
        "judge errors (2, not counted):",
        f"  judge-error-01: openai:{JUDGE}: HTTP 400 bad_request: cannot grade this",
        f"  judge-error-02: openai:{JUDGE}: HTTP 400 bad_request: cannot grade this",
    ]
    assert lines[25] == f"stored as {KEY} in golden_cases/judge-calibration.json"
    date = lines[26].rsplit(", ", 1)[1]
    assert date in dates
    assert lines[26] == f"judge {JUDGE}: κ = {kappa:.2f} on 68 labelled cases, {date}"
    assert len(lines) == 27

    store = tmp_path / "golden_cases" / "judge-calibration.json"
    document = json.loads(store.read_text())
    assert document["version"] == 1
    assert list(document["calibrations"]) == [KEY]
    entry = document["calibrations"][KEY]
    assert entry == {
        "judge_model": JUDGE,
        "prompt_version": JUDGE_PROMPT_VERSION,
        "date": date,
        "cases": 68,
        "kappa": pytest.approx(kappa),
        "agreement": pytest.approx(54 / 68),
        "precision": pytest.approx(30 / 34),
        "recall": pytest.approx(30 / 40),
        "true_pass": 30,
        "false_pass": 4,
        "false_fail": 10,
        "true_fail": 24,
        "threshold": 0.85,
        "best_threshold": best,
        "best_kappa": pytest.approx(best_kappa),
        "disagreements": 14,
        "errors": 2,
        "labels": str(LABELS),
        "scored": 60,
        "score_alpha": pytest.approx(interval_alpha(*_score_pairs())),
    }
    # Every labelled output went to the judge once; each error twice (the judge asks again
    # in plain text after a 400 to its structured request).
    stats = judge_server.stats()
    assert stats["by_model"] == {JUDGE: 68 + 2 * 2}
    assert stats["by_status"] == {200: 68, 400: 4}
    for secret in SECRETS:
        assert secret not in out
        assert secret not in store.read_text()


def test_json_report_and_another_threshold(
    judge_server: LocalProviderServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "calibrations.json"
    args = ["calibrate", str(LABELS), "--judge-model", f"openai:{JUDGE}", "--threshold", "0.5"]
    assert main([*args, "--json", "-o", str(store)]) == 0
    report = json.loads(capsys.readouterr().out)
    judged = judged_rows()
    people = [people_pass(row) for row, _ in judged]
    kappa = kappa_of(people, [score >= 0.5 for _, score in judged])
    assert kappa == pytest.approx(1696 / 2240)  # at 0.5 every paraphrase passes
    calibration = report["calibration"]
    assert report["key"] == KEY
    assert report["stored"] == str(store)
    assert calibration["judge_model"] == f"openai:{JUDGE}"
    assert calibration["kappa"] == pytest.approx(kappa)
    assert (calibration["precision"], calibration["recall"]) == (
        pytest.approx(36 / 40),
        pytest.approx(36 / 40),
    )
    assert calibration["threshold"] == 0.5
    assert calibration["disagreements"] == 8
    assert [d["id"] for d in report["disagreements"]][:4] == [
        "false-pass-01",
        "false-pass-02",
        "false-pass-03",
        "false-pass-04",
    ]
    assert report["disagreements"][0] == {
        "id": "false-pass-01",
        "line": 56,
        "people": "fail",
        "judge": "pass",
        "score": 1.0,
        "threshold": 0.5,
        "reason": "The candidate matches the reference (similarity 1.00). "
        "(accuracy 1.00, completeness 1.00, format 1.00)",
    }
    assert [e["id"] for e in report["errors"]] == ["judge-error-01", "judge-error-02"]
    assert report["summary"] == calibration_line(Calibration(**calibration), f"openai:{JUDGE}")
    # Stored under the same key as "gpt-5.5-...": one judge, however it is written.
    assert find_calibration(store, JUDGE) == Calibration(**calibration)
    assert not (tmp_path / "golden_cases").exists()


def test_judge_calls_run_concurrently_within_the_budget(
    judge_server: LocalProviderServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    judge_server.pause()
    status: list[int] = []
    thread = threading.Thread(
        target=lambda: status.append(
            main(["calibrate", str(LABELS), "--judge-model", JUDGE, "--concurrency", "5"])
        )
    )
    thread.start()
    try:
        assert judge_server.wait_for_in_flight(5)
    finally:
        judge_server.resume()
        thread.join(timeout=60)
    assert status == [0]
    assert judge_server.stats()["max_in_flight"] == 5
    assert "68 cases judged" in capsys.readouterr().out


def test_many_disagreements_are_cut_at_twenty(
    judge_server: LocalProviderServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    labels = tmp_path / "flipped.jsonl"
    agreed = [row for row in rows() if row["note"] in ("agree-pass", "agree-fail")]
    flipped = [{**row, "label": not people_pass(row)} for row in agreed[:15] + agreed[-15:]]
    labels.write_text("".join(json.dumps(row) + "\n" for row in flipped))
    assert main(["calibrate", str(labels), "--judge-model", JUDGE, "--no-store"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "disagreements (30, worst first):" in lines
    start = lines.index("disagreements (30, worst first):")
    assert lines[start + 21] == "  ... and 10 more"
    assert lines[-2] == "not stored (--no-store)"
    assert lines[-1].startswith(f"judge {JUDGE}: κ = -1.00 on 30 labelled cases, ")
    assert not (tmp_path / "golden_cases").exists()


def test_every_call_failing_exits_1_and_stores_nothing(
    make_server: StartServer,
    provider_env: PointEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_server({"models": {JUDGE: {"judge": True, "errors": [{"status": 403}]}}})
    provider_env(server)
    monkeypatch.chdir(tmp_path)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(row) + "\n" for row in rows()[:3]))
    assert main(["calibrate", str(labels), "--judge-model", JUDGE]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        f"labels: {labels}: 3 cases; every judge call failed, nothing was measured or stored"
    )
    assert lines[2] == "judge errors (3, not counted):"
    assert len(lines) == 6
    assert not (tmp_path / "golden_cases").exists()


def test_subprocess_with_serve_and_a_second_judge_keeps_the_first(tmp_path: Path) -> None:
    """``python -m pytest_llmregress.cli judge calibrate`` against ``--serve SCENARIO``, twice:
    the second judge's entry joins the first's."""
    scenario = tmp_path / "scenario.yaml"
    other = "claude-opus-4-7"
    scenario.write_text(yaml.safe_dump({"models": {**SCENARIO["models"], other: {"judge": True}}}))
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env["ANTHROPIC_API_KEY"], env["OPENAI_API_KEY"] = SECRETS
    outputs = []
    command = [sys.executable, "-m", "pytest_llmregress.cli", "judge", "calibrate", str(LABELS)]
    for model in (JUDGE, other):
        done = subprocess.run(
            [*command, "--judge-model", model, "--serve", str(scenario)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        outputs.append(done.stdout)
    store = tmp_path / "golden_cases" / "judge-calibration.json"
    stored = load_calibrations(store)
    assert list(stored) == [KEY, f"anthropic:{other}@{JUDGE_PROMPT_VERSION}"]
    assert (stored[KEY].errors, stored[KEY].cases) == (2, 68)
    # The other judge errs on nothing: every case counts.
    assert stored[f"anthropic:{other}@{JUDGE_PROMPT_VERSION}"].cases == 70
    assert outputs[1].splitlines()[-1] == calibration_line(find_calibration(store, other), other)
    for secret in SECRETS:
        assert all(secret not in text for text in [*outputs, store.read_text()])


def test_bad_labels_are_refused_with_every_problem_and_no_call(
    judge_server: LocalProviderServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    good = {"id": "a", "task": "t", "reference": "r", "output": "o", "label": "pass"}
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "\n".join(
            [
                json.dumps(good),
                json.dumps({**good, "label": "ok", "score": 1.5}),
                "{not json",
                json.dumps({"id": "b", "task": "t", "reference": "r", "lable": "pass"}),
                json.dumps([good]),
                json.dumps({**good, "id": "c", "user": "t"}),
                json.dumps({**good, "id": "d"})[:-1] + ', "label": "fail"}',
            ]
        )
        + "\n"
    )
    assert main(["calibrate", str(labels), "--judge-model", JUDGE]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    name = str(labels)
    assert err.splitlines() == [
        f"llmregress judge calibrate: {name}: the labels are not valid:",
        f"{name}:2: case 'a': field 'id': duplicate id 'a' (first at line 1)",
        f"{name}:2: case 'a': field 'label': expected pass or fail (or true/false), got "
        "string 'ok'",
        f"{name}:2: case 'a': field 'score': expected a number from 0 to 1, got number 1.5",
        f"{name}:3: invalid JSON at column 2: Expecting property name enclosed in double quotes",
        f"{name}:4: case 'b': field 'lable': unknown key 'lable' (expected one of: id, task, "
        "user, reference, output, label, score, note); did you mean 'label'?",
        f"{name}:4: case 'b': missing field 'output'",
        f"{name}:4: case 'b': missing field 'label'",
        f"{name}:5: expected a JSON object (one case per line), got list "
        "[{'id': 'a', 'task': 't', 'reference'...",
        f"{name}:6: case 'c': field 'user': give the task as 'task' or as 'user', not both",
        f"{name}:7: duplicate key 'label' in the JSON object",
    ]
    assert judge_server.stats()["requests"] == 0


def test_yaml_labels_name_the_line_of_the_field(tmp_path: Path) -> None:
    labels = tmp_path / "labels.yaml"
    labels.write_text(
        "cases:\n"
        "  - id: a\n"
        "    task: t\n"
        "    reference: r\n"
        "    output: o\n"
        "    label: pass\n"
        "    score: 0.9\n"
        "  - id: b\n"
        "    user: t\n"
        "    reference: r\n"
        "    output: o\n"
        "    label: false\n"
    )
    first, second = load_labels(labels)
    assert (first.id, first.passed, first.score, first.line) == ("a", True, 0.9, 2)
    assert (second.task, second.passed, second.line) == ("t", False, 8)
    labels.write_text(labels.read_text().replace("label: false", "label: maybe") + "  - 3\n")
    with pytest.raises(LabelsFileError) as caught:
        load_labels(labels)
    assert str(caught.value).splitlines() == [
        f"{labels}:12: case 'b': field 'label': expected pass or fail (or true/false), got "
        "string 'maybe'",
        f"{labels}:13: expected a mapping (one labelled case)",
    ]
    labels.write_text("- id: a\n  label: pass\n  label: fail\n")
    with pytest.raises(LabelsFileError) as caught:
        load_labels(labels)
    assert str(caught.value) == (
        f"{labels}:3: duplicate key 'label' in a labelled case (first at line 2)"
    )
    labels.write_text("")
    with pytest.raises(LabelsFileError, match="no labelled cases in the file"):
        load_labels(labels)


def test_usage_errors_exit_2_before_any_call(
    judge_server: LocalProviderServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", str(LABELS)]) == 2
    assert "no judge model: give --judge-model ID" in capsys.readouterr().err
    assert main(["calibrate", str(LABELS), "--judge-model", "mystery-model"]) == 2
    assert "cannot tell which provider serves 'mystery-model'" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "missing.jsonl"), "--judge-model", JUDGE]) == 2
    assert "missing.jsonl: cannot read the file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["calibrate", str(LABELS), "--judge-model", JUDGE, "--threshold", "2"])
    assert exited.value.code == 2
    assert "expected a number between 0 and 1, got '2'" in capsys.readouterr().err
    # A damaged store is refused before any call, naming the file; it is left as it was.
    store = tmp_path / "golden_cases" / "judge-calibration.json"
    store.parent.mkdir()
    store.write_text('{"version": 1, "calibrations": [')
    assert main(["calibrate", str(LABELS), "--judge-model", JUDGE]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "llmregress judge calibrate: golden_cases/judge-calibration.json: not a judge "
        "calibration store: invalid JSON at line 1"
    )
    assert "Traceback" not in err
    assert store.read_text() == '{"version": 1, "calibrations": ['
    # So is a store that cannot be read.
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    args = ["calibrate", str(LABELS), "--judge-model", JUDGE, "-o", str(blocked / "cal.json")]
    assert main(args) == 2
    assert f"{blocked / 'cal.json'}: cannot read: " in capsys.readouterr().err
    assert judge_server.stats()["requests"] == 0


def test_a_missing_key_names_the_variable_never_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRETS[0])
    assert main(["calibrate", str(LABELS), "--judge-model", JUDGE]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"llmregress judge calibrate: OPENAI_API_KEY is not set, and the judge openai:{JUDGE} "
        "needs it: set it, give --openai-base-url for a server that takes no key, or run "
        "against the local provider server with --serve SCENARIO\n"
    )


def test_the_judge_model_from_pyproject(
    judge_server: LocalProviderServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(f'[tool.llmregress]\njudge_model = "{JUDGE}"\n')
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(row) + "\n" for row in rows()[:2]))
    assert main(["calibrate", str(labels), "--no-store", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calibration"]["judge_model"] == JUDGE
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.llmregress]\njudge_model = "{JUDGE},claude-opus-4-7"\n'
    )
    assert main(["calibrate", str(labels), "--no-store"]) == 2
    assert "one judge at a time" in capsys.readouterr().err


def test_help_lists_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "  judge    measure the judge against human labels" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        cli.main(["judge", "--help"])
    assert exited.value.code == 0
    listed = capsys.readouterr().out
    assert "\n    calibrate\n" in listed
    assert "measure the judge against human labels" in listed
    with pytest.raises(SystemExit) as exited:
        cli.main(["judge", "calibrate", "--help"])
    help_text = capsys.readouterr().out
    for option in ("--judge-model", "--threshold", "--serve", "--concurrency", "--store"):
        assert option in help_text
    assert "--no-store" in help_text
    assert "--json" in help_text
    assert "default 0.85" in help_text


# --- the store ---------------------------------------------------------------------------


def _calibration(**changes: Any) -> Calibration:
    values: dict[str, Any] = {
        "judge_model": JUDGE,
        "prompt_version": JUDGE_PROMPT_VERSION,
        "date": "2026-11-02",
        "cases": 120,
        "kappa": 0.8123,
        "agreement": 0.91,
        "precision": 0.9,
        "recall": 0.95,
        "true_pass": 57,
        "false_pass": 6,
        "false_fail": 3,
        "true_fail": 54,
        "threshold": 0.85,
        "best_threshold": 0.8,
        "best_kappa": 0.83,
        "disagreements": 9,
        "errors": 0,
        "labels": "labels.jsonl",
    }
    values.update(changes)
    return Calibration(**values)


def test_store_round_trip_keyed_by_model_and_prompt_version(tmp_path: Path) -> None:
    store = tmp_path / "deep" / "judge-calibration.json"
    assert load_calibrations(store) == {}
    assert find_calibration(store, JUDGE) is None
    first = _calibration()
    save_calibration(store, first)
    older = _calibration(prompt_version="1", kappa=0.5, date="2026-01-01")
    save_calibration(store, older)
    other = _calibration(judge_model="claude-opus-4-7", kappa=None, best_kappa=None)
    save_calibration(store, other)
    assert list(load_calibrations(store)) == [
        KEY,
        f"openai:{JUDGE}@1",
        f"anthropic:claude-opus-4-7@{JUDGE_PROMPT_VERSION}",
    ]
    assert find_calibration(store, JUDGE) == first
    assert find_calibration(store, f"openai:{JUDGE}", "1") == older
    assert find_calibration(store, "claude-opus-4-7") == other
    assert find_calibration(store, JUDGE, "9") is None
    # A new calibration of one judge replaces only its own entry.
    newer = _calibration(kappa=0.9, date="2026-12-01")
    save_calibration(store, newer)
    stored = load_calibrations(store)
    assert stored[KEY] == newer
    assert stored[f"openai:{JUDGE}@1"] == older
    assert calibration_key("some-local-model", "2") == "some-local-model@2"
    assert not [p for p in store.parent.iterdir() if p.name.endswith(".tmp")]


def test_calibration_lines() -> None:
    assert calibration_line(_calibration(), JUDGE) == (
        f"judge {JUDGE}: κ = 0.81 on 120 labelled cases, 2026-11-02"
    )
    assert calibration_line(_calibration(kappa=None, cases=1), JUDGE) == (
        f"judge {JUDGE}: κ undefined on 1 labelled case, 2026-11-02"
    )
    assert calibration_line(None, JUDGE, prompt_version="3") == (
        f"judge {JUDGE}: uncalibrated (no calibration for judge prompt v3 in "
        "golden_cases/judge-calibration.json; run llmregress judge calibrate)"
    )
    assert calibration_line(None, JUDGE, store="ci/cal.json").endswith(
        f"judge prompt v{JUDGE_PROMPT_VERSION} in ci/cal.json; run llmregress judge calibrate)"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "expected a JSON object, got an empty list"),
        ('{"version": 2, "calibrations": {}}', "expected 'version': 1, got integer 2"),
        ('{"version": 1}', "'calibrations' must be an object, got null"),
        ('{"version": 1, "calibrations": {"k": 3}}', "calibrations['k']: expected an object"),
        (
            '{"version": 1, "calibrations": {"k": {"judge_model": "m"}}}',
            "calibrations['k']: missing field 'prompt_version'",
        ),
        ("\udcff", "not UTF-8 text"),
    ],
)
def test_a_damaged_store_is_an_error_naming_the_file(
    tmp_path: Path, text: str, problem: str
) -> None:
    store = tmp_path / "judge-calibration.json"
    store.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(CalibrationStoreError) as caught:
        find_calibration(store, JUDGE)
    assert str(caught.value).startswith(f"{store}: not a judge calibration store: ")
    assert problem in str(caught.value)
    with pytest.raises(CalibrationStoreError):
        save_calibration(store, _calibration())
    assert store.read_bytes() == text.encode("utf-8", "surrogateescape")
    entry = _calibration().to_dict()
    entry["cases"] = "many"
    store.write_text(json.dumps({"version": 1, "calibrations": {KEY: entry}}))
    with pytest.raises(CalibrationStoreError, match="field 'cases': unexpected string 'many'"):
        load_calibrations(store)
