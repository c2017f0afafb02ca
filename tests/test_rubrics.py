"""Rubrics per case: the field, the judge prompt and verdict, the local judge, end to end."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cases.golden import CaseFileError, GoldenCase, load_cases
from pytest_llmregress.scoring.judge import (
    JUDGE_SYSTEM,
    VERDICT_SCHEMA,
    Criterion,
    build_judge_prompt,
    parse_judge_reply,
)
from pytest_llmregress.scoring.score import Score, ScorerError
from pytest_llmregress.testing.scenario import ScenarioError, parse_scenario
from pytest_llmregress.testing.server import judge_answer
from pytest_llmregress.verdict.results import load_results
from tests.conftest import JUDGE
from tests.test_plugin_e2e import MakeServer, PointEnv, model_args, scenario, write_cases

RUBRIC = (
    Criterion("cites_policy", "names the refund policy section", 2.0),
    Criterion("polite", "no blame on the customer"),
)


def write(tmp_path: Path, text: str, name: str = "g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- the field ------------------------------------------------------------------------------


def test_a_rubric_is_a_list_of_criteria_or_one_sentence(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults:
          rubric: answers in French
        cases:
          - id: listed
            user: Refund?
            rubric:
              - {name: cites_policy, weight: 2, description: names the refund policy section}
              - {name: polite, description: no blame on the customer}
          - id: inherited
            user: Hi
        """,
    )
    listed, inherited = load_cases(path)
    assert listed.rubric == RUBRIC
    assert inherited.rubric == (Criterion("rubric", "answers in French", 1.0),)
    plain = load_cases(write(tmp_path, "- {id: a, user: Hi}\n"))[0]
    assert plain.rubric == ()
    assert "rubric" not in plain.to_dict()
    assert GoldenCase.from_dict(json.loads(json.dumps(listed.to_dict()))) == listed
    assert GoldenCase.from_dict(json.loads(json.dumps(listed.to_dict()))).rubric == RUBRIC


def test_bad_rubrics_are_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        cases:
          - id: a
            user: hi
            rubric:
              - {name: cites policy, description: x}
              - {name: polite, description: "", weight: 0}
              - {name: polite, description: y, wieght: 2}
          - id: b
            user: hi
            rubric: []
          - id: c
            user: hi
            rubric: 3
          - id: d
            user: hi
            rubric: [{name: reason, description: z}, {description: w, weight: true}]
        """,
    )
    with pytest.raises(CaseFileError) as caught:
        load_cases(path)
    lines = str(caught.value).splitlines()
    name_rule = (
        "it must start with a letter or '_', contain only letters, digits and '_' (at most 64) "
        "and not be 'reason'"
    )
    assert lines == [
        f"{path}:4: case 'a': field 'rubric[0].name': invalid criterion name 'cites policy': "
        + name_rule,
        f"{path}:4: case 'a': field 'rubric[1].description': expected a non-empty string, "
        "got string ''",
        f"{path}:4: case 'a': field 'rubric[1].weight': expected a positive number, got integer 0",
        f"{path}:4: case 'a': field 'rubric[2]': unknown key 'wieght' (expected: name, "
        "description, weight); did you mean 'weight'?",
        f"{path}:4: case 'a': field 'rubric[2].name': criterion 'polite' is listed twice",
        f"{path}:10: case 'b': field 'rubric': expected a string or a non-empty list of criteria "
        "({name, description, weight}), got an empty list",
        f"{path}:13: case 'c': field 'rubric': expected a string or a non-empty list of criteria "
        "({name, description, weight}), got integer 3",
        f"{path}:16: case 'd': field 'rubric[0].name': invalid criterion name 'reason': "
        + name_rule,
        f"{path}:16: case 'd': field 'rubric[1].name': missing; name the criterion",
        f"{path}:16: case 'd': field 'rubric[1].weight': expected a positive number, "
        "got boolean True",
    ]


def test_a_case_rubric_needs_the_judge(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults:
          rubric: Short.
        cases:
          - {id: a, user: hi, reference: x, scorers: [exact]}
          - {id: b, user: hi, reference: x, scorers: [exact], rubric: Short.}
        """,
    )
    with pytest.raises(CaseFileError) as caught:
        load_cases(path)
    assert str(caught.value) == (
        f"{path}:5: case 'b': field 'rubric': the rubric is for the judge, and this case has no "
        "'judge' scorer"
    )


def test_a_rubric_in_defaults_is_checked_too(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  rubric: '  '\ncases:\n  - {id: a, user: hi}\n")
    with pytest.raises(CaseFileError) as caught:
        load_cases(path)
    assert str(caught.value) == (
        f"{path}:2: field 'defaults.rubric': expected a non-empty string, got an empty one"
    )


DOCS = Path(__file__).resolve().parent.parent / "docs" / "golden-files.md"


@pytest.mark.skipif(not DOCS.exists(), reason="docs are not shipped here")
def test_the_docs_example_loads(tmp_path: Path) -> None:
    (block,) = re.findall(r"^```yml\n(- id: refund-late.*?)^```$", DOCS.read_text(), re.M | re.S)
    late, greeting = load_cases(write(tmp_path, block))
    assert late.rubric == RUBRIC
    assert greeting.rubric == (Criterion("rubric", "answers in French, as one short sentence"),)


# -- the judge prompt and verdict -------------------------------------------------------------


def test_the_judge_prompt_lists_the_rubric_instead_of_the_default_criteria() -> None:
    prompt = build_judge_prompt(task="T?", reference="R.", candidate="C.", rubric=RUBRIC)
    assert "- cites_policy: names the refund policy section\n" in prompt.system
    assert "- polite: no blame on the customer\n" in prompt.system
    assert "accuracy" not in prompt.system
    assert "never instructions" in prompt.system
    assert prompt.system.endswith(
        '{"reason": "<one sentence>", "cites_policy": <0..1>, "polite": <0..1>}'
    )
    schema = prompt.reply_schema.schema
    assert list(schema["properties"]) == ["reason", "cites_policy", "polite"]
    assert schema["required"] == ["reason", "cites_policy", "polite"]
    assert schema["additionalProperties"] is False
    # Same texts, same delimiters: the rubric changes the system prompt, not the blocks.
    plain = build_judge_prompt(task="T?", reference="R.", candidate="C.")
    assert plain.user == prompt.user
    assert plain.system == JUDGE_SYSTEM
    assert plain.reply_schema is VERDICT_SCHEMA


def judged(reply: dict[str, Any] | str, threshold: float = 0.8) -> Score:
    text = reply if isinstance(reply, str) else json.dumps(reply)
    return parse_judge_reply(text, judge_model="openai:j", threshold=threshold, rubric=RUBRIC)


def test_the_score_is_the_weighted_mean_of_the_criteria() -> None:
    score = judged({"reason": "Cites no section.", "cites_policy": 0.2, "polite": 1})
    assert score.value == pytest.approx((2 * 0.2 + 1.0) / 3, abs=1e-4)
    assert not score.passed
    assert score.criteria == {"cites_policy": 0.2, "polite": 1.0}
    assert score.reason == "Cites no section. (cites_policy 0.20, polite 1.00)"
    assert score.to_dict()["criteria"] == {"cites_policy": 0.2, "polite": 1.0}
    assert Score.from_dict(json.loads(json.dumps(score.to_dict()))) == score
    good = judged({"reason": "Fine.", "cites_policy": 0.9, "polite": 0.6})
    assert good.value == pytest.approx(0.8)
    assert good.passed


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ({"reason": "r", "cites_policy": 1}, "no numeric 'polite'"),
        ({"reason": "r", "cites_policy": 1, "polite": 1, "accuracy": 1}, "'accuracy', not a"),
        ({"reason": "r", "cites_policy": 1.5, "polite": 1}, "cites_policy=1.5, outside 0..1"),
        ({"cites_policy": 1, "polite": 1}, "no reason"),
        ({"reason": "r", "accuracy": 1, "completeness": 1, "format": 1}, "not a criterion"),
    ],
)
def test_a_verdict_that_does_not_match_the_rubric_is_unreadable(
    reply: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ScorerError, match=problem.replace("(", r"\(")):
        judged(reply)


def test_scores_without_a_rubric_carry_no_criteria() -> None:
    reply = json.dumps({"reason": "ok", "accuracy": 1, "completeness": 1, "format": 1})
    score = parse_judge_reply(reply, judge_model="openai:j", threshold=0.8)
    assert score.criteria is None
    assert "criteria" not in score.to_dict()
    old = {"scorer": "judge", "value": 1.0, "passed": True, "reason": "ok", "threshold": 0.8}
    assert Score.from_dict(old).criteria is None  # a results file from before rubrics


# -- the local judge ------------------------------------------------------------------------


def test_the_local_judge_scores_the_criteria_the_prompt_lists() -> None:
    prompt = build_judge_prompt(task="T?", reference="Same.", candidate="Same.", rubric=RUBRIC)
    answer = judge_answer(prompt.user, prompt.system, scores={"cites_policy": 0.25})
    assert answer.verdict is not None
    assert {k: v for k, v in answer.verdict.items() if k != "reason"} == {
        "cites_policy": 0.25,
        "polite": 1.0,
    }
    plain = build_judge_prompt(task="T?", reference="Same.", candidate="Same.")
    verdict = judge_answer(plain.user, plain.system, scores={"cites_policy": 0.25}).verdict
    assert verdict is not None
    assert set(verdict) == {"reason", "accuracy", "completeness", "format"}


def test_judge_scores_are_validated_in_a_scenario() -> None:
    parsed = parse_scenario({"models": {"j": {"judge": True, "judge_scores": {"polite": 0.5}}}})
    assert parsed.models["j"].judge_scores == {"polite": 0.5}
    with pytest.raises(ScenarioError, match=r"models\.j\.judge_scores\.polite"):
        parse_scenario({"models": {"j": {"judge": True, "judge_scores": {"polite": 2}}}})


# -- end to end -----------------------------------------------------------------------------


def rubric_cases(rubric: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": "refund",
            "user": "Can I get a refund?",
            "reference": "Yes, within 30 days under section 4.2.",
            "rubric": rubric,
        },
        {
            "id": "polite",
            "user": "Why was I charged twice?",
            "reference": "Sorry about that; the second charge is refunded.",
            "rubric": [{"name": "kind", "description": "apologises"}],
        },
        {"id": "plain", "user": "What is 2+2?", "reference": "4."},
    ]


def judge_scenario(cases: list[dict[str, Any]], scores: dict[str, float]) -> dict[str, Any]:
    scripted = scenario(cases)
    scripted["models"][JUDGE]["judge_scores"] = scores
    return scripted


LISTED = [
    {"name": "cites_policy", "weight": 2, "description": "names the refund policy section"},
    {"name": "polite", "description": "no blame on the customer"},
]


def test_a_rubric_case_passes_or_fails_on_the_weighted_mean(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = rubric_cases(LISTED)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(judge_scenario(cases, {"cites_policy": 0.2, "kind": 0.9}))
    provider_env(server)
    result = pytester.runpytest(
        *model_args("--llm-report=out.json", "--llm-min-pass-rate=0", "--llm-markdown=sum.md")
    )
    result.assert_outcomes(passed=2, failed=1)
    markdown = (pytester.path / "sum.md").read_text()
    assert "| judge 0.47 &lt; 0.85 [cites_policy 0.20, polite 1.00] |" in markdown
    result.stdout.fnmatch_lines(
        [
            "*golden case 'refund' (golden_cases/qa.jsonl:1) failed: score 0.47*",
            f"  FAIL judge ?openai:{JUDGE}?: 0.47*(cites_policy 0.20, polite 1.00)",
        ]
    )
    result.stdout.fnmatch_lines(["*refund*judge 0.47 < 0.85 [[]cites_policy 0.20, polite 1.00]"])
    by_id = {r.case_id: r for r in load_results(pytester.path / "out.json").cases}
    refund = by_id["refund"].scores[0]
    assert refund.value == pytest.approx(0.4667)
    assert refund.criteria == {"cites_policy": 0.2, "polite": 1.0}
    assert by_id["polite"].outcome == "passed"
    assert by_id["polite"].scores[0].criteria == {"kind": 0.9}
    assert by_id["plain"].outcome == "passed"
    assert by_id["plain"].scores[0].criteria is None
    document = json.loads((pytester.path / "out.json").read_text())
    scores = {c["case_id"]: c["scores"][0] for c in document["cases"]}
    assert scores["refund"]["criteria"] == {"cites_policy": 0.2, "polite": 1.0}
    assert "criteria" not in scores["plain"]
    judge_systems = [r.system or "" for r in server.requests if r.requested_model == JUDGE]
    assert sum("- cites_policy: names the refund policy section" in s for s in judge_systems) == 1
    assert sum("- accuracy:" in s for s in judge_systems) == 1


def test_the_judge_cache_re_judges_when_the_rubric_changes(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = rubric_cases(LISTED)
    path = write_cases(pytester, "qa.jsonl", cases)
    server = make_server(judge_scenario(cases, {"cites_policy": 0.2}))
    provider_env(server)
    args = model_args("--llm-report=out.json", "--llm-min-pass-rate=0")

    def judge_calls() -> int:
        return sum(1 for r in server.requests if r.requested_model == JUDGE)

    def refund_score() -> Score:
        results = load_results(pytester.path / "out.json").cases
        return next(r for r in results if r.case_id == "refund").scores[0]

    pytester.runpytest(*args).assert_outcomes(passed=2, failed=1)
    assert judge_calls() == 3
    pytester.runpytest(*args).assert_outcomes(passed=2, failed=1)
    assert judge_calls() == 3  # every verdict from the cache
    # A new weight is applied to the cached criteria: no question changed.
    reweighted = [{**LISTED[0], "weight": 1}, LISTED[1]]
    path.write_text("".join(json.dumps(c) + "\n" for c in rubric_cases(reweighted)))
    pytester.runpytest(*args).assert_outcomes(passed=2, failed=1)
    assert judge_calls() == 3
    assert refund_score().value == pytest.approx(0.6)
    # A new criterion, or a new description, is a new question for the judge.
    reworded = [LISTED[0], {**LISTED[1], "description": "thanks the customer"}]
    path.write_text("".join(json.dumps(c) + "\n" for c in rubric_cases(reworded)))
    pytester.runpytest(*args).assert_outcomes(passed=2, failed=1)
    assert judge_calls() == 4
    judge_systems = [r.system or "" for r in server.requests if r.requested_model == JUDGE]
    assert "- polite: thanks the customer" in judge_systems[-1]
