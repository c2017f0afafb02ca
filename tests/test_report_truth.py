"""What the report shows is what decided: each scorer's own threshold, in every place.

A scorer may apply another threshold than the case's: ``similarity`` and ``judge`` take a
``threshold`` option, and ``exact``, ``contains``, ``regex`` and ``json`` pass only at 1.0.
The summary, the flips list, the markdown and a failed item's verdict show the threshold
the scorer applied, carried in its ``Score``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmregress.cases.golden import GoldenCase, Message
from pytest_llmregress.collect.items import render_verdict
from pytest_llmregress.report.markdown import comparison_markdown, run_markdown
from pytest_llmregress.report.terminal import comparison_lines, summary_lines
from pytest_llmregress.scoring.score import Score
from pytest_llmregress.scoring.scorers import parse_scorer_spec, score_deterministic
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.compare import compare_runs
from pytest_llmregress.verdict.gate import decide
from pytest_llmregress.verdict.results import CaseResult, Outcome, RunResult, case_from_record
from tests.conftest import JUDGE
from tests.test_plugin_e2e import write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]

PRODUCTION = "claude-sonnet-4-6"
CANDIDATE = "claude-sonnet-5"
REFERENCE = "Returns are accepted within 30 days of delivery, with the receipt."
# 9 edits over 66 characters: similarity 0.864, above the case's 0.85, below the scorer's 0.9.
DRIFTED = "Returns are accepted within 14 days of arrival, with the receipts."


def similarity_case(outcome: Outcome, value: float) -> CaseResult:
    """A case whose similarity scorer has its own threshold, 0.9; the case's is 0.85."""
    score = Score("similarity", value, outcome == "passed", f"similarity {value:.3f}", 0.9)
    return CaseResult(
        case_id="refund-window",
        nodeid="golden_cases/support.jsonl::refund-window",
        path="golden_cases/support.jsonl",
        line=1,
        outcome=outcome,
        threshold=0.85,
        scores=(Score("contains", 1.0, True, "found 'receipt'", 1.0), score),
        output=DRIFTED if outcome == "failed" else REFERENCE,
        reference=REFERENCE,
    )


def golden_case() -> GoldenCase:
    return GoldenCase(
        id="refund-window", messages=(Message("user", "Returns?"),), reference=REFERENCE
    )


def test_a_similarity_threshold_of_its_own_is_carried_in_its_score() -> None:
    spec = parse_scorer_spec({"similarity": {"threshold": 0.9}})
    score = score_deterministic(spec, DRIFTED, golden_case())
    assert (round(score.value, 3), score.passed, score.threshold) == (0.864, False, 0.9)
    assert score.against_threshold() == "0.86 < 0.90"


@pytest.mark.parametrize(
    ("spec", "output", "shown"),
    [
        ("exact", "no", "0.00 < 1.00"),
        ({"contains": ["30 days", "receipt"]}, "the receipt", "0.50 < 1.00"),
        ({"regex": "^yes$"}, "no", "0.00 < 1.00"),
        ("json", "not json", "0.00 < 1.00"),
        ({"exact": {"value": "no"}}, "no", "1.00 >= 1.00"),
    ],
)
def test_all_or_nothing_scorers_carry_their_threshold_of_one(
    spec: object, output: str, shown: str
) -> None:
    score = score_deterministic(parse_scorer_spec(spec), output, golden_case())
    assert score.threshold == 1.0
    assert score.against_threshold() == shown


def test_against_threshold_never_prints_two_equal_numbers() -> None:
    assert Score("similarity", 0.897, False, "", 0.9).against_threshold() == "0.897 < 0.900"
    assert Score("judge", 0.8999, False, "", 0.9).against_threshold() == "0.8999 < 0.9000"
    assert Score("judge", 0.9, True, "", 0.9).against_threshold() == "0.90 >= 0.90"
    assert Score("exact", 0.0, False, "").against_threshold() == "0.00, failed"


def test_the_summary_shows_the_threshold_the_scorer_applied() -> None:
    failed = similarity_case("failed", 0.864)
    verdict = decide([failed], min_pass_rate=0.0, max_error_rate=1.0)
    lines = [
        line.text
        for line in summary_lines(
            verdict,
            [failed],
            candidate=CANDIDATE,
            judge=None,
            resolved={},
            worst=5,
            report_path=None,
        )
    ]
    assert "  golden_cases/support.jsonl::refund-window  similarity 0.86 < 0.90" in lines
    assert not any("< 0.85" in line for line in lines)


def test_a_failed_item_shows_the_threshold_that_decided() -> None:
    text = render_verdict(similarity_case("failed", 0.864))
    assert text.splitlines()[0] == (
        "golden case 'refund-window' (golden_cases/support.jsonl:1) failed: score 0.86, "
        "threshold 0.90"
    )
    assert "  FAIL similarity: 0.86 (threshold 0.90): similarity 0.864" in text
    assert "0.85" not in text


def test_a_failed_item_with_two_failing_scorers_names_the_worst_and_counts_them() -> None:
    result = CaseResult(
        case_id="c",
        nodeid="g.jsonl::c",
        path="g.jsonl",
        line=3,
        outcome="failed",
        threshold=0.5,
        scores=(
            Score("judge", 0.6, False, "close", 0.7),
            Score("regex", 0.0, False, "no match", 1.0),
        ),
    )
    assert result.deciding_score == result.scores[1]
    first = render_verdict(result).splitlines()[0]
    assert first.endswith("failed: score 0.00, threshold 1.00 (2 scorers failed)")


def test_the_flips_list_and_the_markdown_show_the_threshold_the_scorer_applied() -> None:
    baseline = RunResult({"candidate": f"anthropic:{PRODUCTION}"}, [similarity_case("passed", 1)])
    candidate = RunResult(
        {"candidate": f"anthropic:{CANDIDATE}"}, [similarity_case("failed", 0.864)]
    )
    comparison = compare_runs(baseline, candidate, resamples=0)
    lines = [line.text for line in comparison_lines(comparison)]
    assert (
        "  golden_cases/support.jsonl::refund-window  score 1.00 -> 0.86 (similarity 0.86 < 0.90)"
    ) in lines
    markdown = comparison_markdown(comparison)
    assert "similarity 0.86 &lt; 0.90: similarity 0.864" in markdown
    assert "0.85" not in markdown
    pair = comparison.to_dict()["cases"][0]
    assert (pair["threshold"], pair["decided_by"]) == (0.9, "similarity")

    verdict = decide(candidate.cases, min_pass_rate=0.0, max_error_rate=1.0)
    run = run_markdown(verdict, results=candidate.cases, candidate=CANDIDATE)
    assert "| Case | Score vs threshold | Why |" in run
    assert (
        "| `golden_cases/support.jsonl::refund-window` | similarity 0.86 &lt; 0.90 | "
        "similarity: similarity 0.864 |"
    ) in run


def test_a_score_stored_without_its_threshold_still_reads_and_shows_its_verdict() -> None:
    record = similarity_case("failed", 0.0).to_dict()
    record["scores"] = [
        {"scorer": "exact", "value": 0.0, "passed": False, "reason": "differs"}  # an old file
    ]
    old = case_from_record(json.loads(json.dumps(record)))
    assert old.scores[0].threshold is None
    assert old.deciding_score == old.scores[0]
    assert old.deciding_threshold == 0.85  # nothing better is known: the case's
    verdict = decide([old], min_pass_rate=0.0, max_error_rate=1.0)
    lines = [
        line.text
        for line in summary_lines(
            verdict, [old], candidate=CANDIDATE, judge=None, resolved={}, worst=5, report_path=None
        )
    ]
    assert "  golden_cases/support.jsonl::refund-window  exact 0.00, failed" in lines
    # A threshold written round-trips.
    new = similarity_case("failed", 0.864)
    assert case_from_record(json.loads(json.dumps(new.to_dict()))).scores == new.scores


def test_a_passed_case_hinges_on_the_score_nearest_its_threshold() -> None:
    result = CaseResult(
        case_id="c",
        nodeid="g.jsonl::c",
        path="g.jsonl",
        line=1,
        outcome="passed",
        threshold=0.5,
        scores=(
            Score("record", 1.0, True, "reference recorded"),  # no threshold: not a candidate
            Score("judge", 0.95, True, "fine", 0.85),
            Score("similarity", 0.92, True, "close", 0.9),
        ),
    )
    assert result.deciding_score == result.scores[2]
    assert result.deciding_threshold == 0.9


# --- end to end ------------------------------------------------------------------------------


def test_a_run_reports_the_similarity_threshold_of_the_scorer_everywhere(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    case = {
        "id": "refund-window",
        "user": "Can I return shoes?",
        "reference": REFERENCE,
        "scorers": [{"similarity": {"threshold": 0.9}}],
    }
    write_cases(pytester, "support.jsonl", [case])
    scenario = {
        "models": {
            PRODUCTION: {"answers": [{"match": case["user"], "reply": REFERENCE}]},
            CANDIDATE: {"answers": [{"match": case["user"], "reply": DRIFTED}]},
            JUDGE: {"judge": True},
        }
    }
    provider_env(make_server(scenario))
    result = pytester.runpytest(
        f"--llm-model={CANDIDATE}",
        f"--llm-compare-model={PRODUCTION}",
        "--llm-min-pass-rate=0",
        "--llm-markdown=summary.md",
        "--llm-report=results.json",
    )
    result.assert_outcomes(failed=1)
    nodeid = "golden_cases/support.jsonl::refund-window"
    result.stdout.fnmatch_lines(
        [
            "golden case 'refund-window' (golden_cases/support.jsonl:1) failed: score 0.86, "
            "threshold 0.90",
            "  FAIL similarity: 0.86 (threshold 0.90): similarity 0.864 *< threshold 0.9",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "worst 1 of 1 failed cases:",
            f"  {nodeid}  similarity 0.86 < 0.90",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "1 of 1 pass->fail flips:",
            f"  {nodeid}  score 1.00 -> 0.86 (similarity 0.86 < 0.90)",
        ]
    )
    assert "< 0.85" not in result.stdout.str()
    markdown = (pytester.path / "summary.md").read_text()
    assert f"| `{nodeid}` | similarity 0.86 &lt; 0.90 | similarity: " in markdown
    assert "| similarity 0.86 &lt; 0.90: similarity 0.864" in markdown
    document = json.loads((pytester.path / "results.json").read_text())
    (score,) = document["cases"][0]["scores"]
    assert (score["scorer"], score["threshold"]) == ("similarity", 0.9)
