"""The session's verdict in the JUnit XML (issue 16, point 6): test-suite properties that CI
dashboards reading JUnit show, read back with ``xml.etree`` from real pytest runs against the
local provider server, with and without xdist workers."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import load_results
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import drifted, model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]


def suite_properties(path: Path) -> dict[str, str]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    assert len(suites) == 1
    found = suites[0].findall("properties/property")
    names = [p.get("name") for p in found]
    assert len(names) == len(set(names)), names  # each said once
    return {str(p.get("name")): str(p.get("value")) for p in found}


def test_the_junit_xml_carries_the_session_verdict_rate_interval_and_cost(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    cases, scripted = drifted(8, bad=2)
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scripted))

    result = pytester.runpytest(
        *model_args("--junitxml=junit.xml", "--llm-report=out.json", "--llm-min-pass-rate=0.9"),
        *run_mode,
    )

    result.assert_outcomes(passed=6, failed=2)
    props = suite_properties(pytester.path / "junit.xml")
    run = load_results(pytester.path / "out.json")
    verdict, cost = run.metadata["verdict"], run.metadata["cost"]
    assert props["llm_verdict"] == "failed"
    assert props["llm_model"] == f"anthropic:{CANDIDATE}"
    assert (props["llm_passed"], props["llm_failed"], props["llm_errors"]) == ("6", "2", "0")
    assert float(props["llm_pass_rate"]) == pytest.approx(0.75)
    low, high = verdict["interval95"]
    assert float(props["llm_pass_rate_low"]) == pytest.approx(low, abs=1e-4)
    assert float(props["llm_pass_rate_high"]) == pytest.approx(high, abs=1e-4)
    assert float(props["llm_min_pass_rate"]) == 0.9
    assert "pass rate" in props["llm_reasons"]
    assert float(props["llm_cost_usd"]) == pytest.approx(cost["total"], abs=1e-6)
    assert float(props["llm_cost_candidate_usd"]) == pytest.approx(
        cost["candidate"]["cost"], abs=1e-6
    )
    assert float(props["llm_cost_usd"]) > 0
    assert props["llm_prices_as_of"] == "2026-12-05"
    assert "llm_comparison" not in props
    assert "llm_cost_unknown_price" not in props
    # The per-case properties stay where they were.
    root = ET.parse(pytester.path / "junit.xml").getroot()
    outcomes = [
        p.get("value")
        for case in root.iter("testcase")
        for p in case.findall("properties/property")
        if p.get("name") == "llm_outcome"
    ]
    assert sorted(outcomes) == ["failed"] * 2 + ["passed"] * 6


def test_a_comparison_puts_its_verdict_p_value_and_cost_change_in_the_junit_xml(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    production = "claude-haiku-4-5-20251001"
    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    both = scenario(cases)
    both["models"][production] = dict(both["models"][CANDIDATE])
    provider_env(make_server(both))

    result = pytester.runpytest(
        *model_args(
            f"--llm-compare-model={production}", "--junitxml=junit.xml", "--llm-report=out.json"
        ),
        *run_mode,
    )

    result.assert_outcomes(passed=4)
    props = suite_properties(pytester.path / "junit.xml")
    comparison = load_results(pytester.path / "out.json").metadata["comparison"]
    assert props["llm_verdict"] == "passed"
    assert props["llm_comparison"] == comparison["verdict"] == "within noise"
    assert props["llm_comparison_baseline"] == comparison["baseline"]["label"]
    assert float(props["llm_comparison_p_value"]) == pytest.approx(comparison["p_value"])
    assert float(props["llm_comparison_difference"]) == 0.0
    assert float(props["llm_comparison_cost_change"]) == pytest.approx(2.0)


def test_an_unknown_price_is_named_in_the_junit_xml(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    unpriced = scenario(cases)
    unpriced["models"]["tiny-chat-v1"] = unpriced["models"].pop(CANDIDATE)
    provider_env(make_server(unpriced))

    result = pytester.runpytest(
        "--llm-model=openai:tiny-chat-v1", f"--llm-judge-model={JUDGE}", "--junitxml=junit.xml"
    )

    result.assert_outcomes(passed=2)
    props = suite_properties(pytester.path / "junit.xml")
    assert props["llm_cost_unknown_price"] == "openai:tiny-chat-v1"
    assert float(props["llm_cost_candidate_usd"]) == 0.0
    assert float(props["llm_cost_judge_usd"]) > 0


def test_without_a_model_the_junit_xml_has_no_session_properties(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest("--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    root = ET.parse(pytester.path / "junit.xml").getroot()
    assert not [p for p in root.iter("property") if str(p.get("name")).startswith("llm_")]
