"""--llm-fallback: the golden suite through the configured fallback chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import load_results
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import answers, qa_cases, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]
FALLBACK = "claude-opus-4-7"


def chain_project(pytester: pytest.Pytester, cases: list[dict[str, Any]]) -> dict[str, Any]:
    write_cases(pytester, "qa.jsonl", cases)
    pytester.makepyprojecttoml(
        f"""
        [tool.llmregress.models.chat]
        id = "{CANDIDATE}"
        fallbacks = ["{FALLBACK}"]
        [tool.llmregress.models.judge]
        id = "{JUDGE}"
        """
    )
    return {
        "latency_ms": 10,
        "models": {
            CANDIDATE: {"answers": answers(cases)},
            FALLBACK: {"answers": answers(cases)},
            JUDGE: {"judge": True},
        },
    }


def answered_by(server: LocalProviderServer, model: str) -> int:
    return sum(1 for r in server.requests if r.resolved_model == model and r.status == 200)


def test_primary_retired_mid_run_moves_later_calls_to_the_fallback(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(12)
    server = make_server(chain_project(pytester, cases))
    provider_env(server)

    def retire() -> None:
        while answered_by(server, CANDIDATE) < 4:
            time.sleep(0.002)
        server.update_model(CANDIDATE, retired=True)

    retirer = threading.Thread(target=retire, daemon=True)
    retirer.start()
    result = pytester.runpytest(
        "--llm-model=@chat", "--llm-fallback", "--llm-concurrency=1", "--llm-min-pass-rate=0.5"
    )
    retirer.join(5)
    primary = answered_by(server, CANDIDATE)
    assert 4 <= primary < 12
    assert answered_by(server, FALLBACK) == 12 - primary
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(
        [
            f"{primary} passed, 0 failed, 0 errors*",
            f"answered by the chain: anthropic:{CANDIDATE} {primary}, "
            f"anthropic:{FALLBACK} {12 - primary}",
            f"{12 - primary} cases answered by a fallback (reported apart, not counted as the "
            "primary's passes):",
            f"  anthropic:{FALLBACK}: {12 - primary}/{12 - primary} passed (100.0%)",
        ]
    )
    assert result.ret == pytest.ExitCode.OK


def test_retired_primary_at_start_only_warns_and_is_never_called_again(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    run_mode: list[str],
) -> None:
    cases = qa_cases(3)
    scripted = chain_project(pytester, cases)
    scripted["models"][CANDIDATE]["retired"] = True
    server = make_server(scripted)
    provider_env(server)
    result = pytester.runpytest("--llm-model=@chat", "--llm-fallback", *run_mode)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "  reason: the primary model answered no case: fallbacks answered all 3",
            f"answered by the chain: anthropic:{CANDIDATE} 0, anthropic:{FALLBACK} 3",
            f"model warning: anthropic:{CANDIDATE} at *404*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # The preflight found the primary retired: exactly one candidate call per case, to the
    # fallback, and none to the primary.
    candidate_calls = [
        (r.requested_model, r.user_text) for r in server.requests if r.requested_model != JUDGE
    ]
    assert sorted(candidate_calls) == sorted((FALLBACK, case["user"]) for case in cases)


def outcomes(path: Path) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """Per case: id, outcome, output, the model that answered (a fallback's id, or None)."""
    return sorted(
        (
            case.case_id,
            case.outcome,
            case.output,
            case.completion.fallback_model if case.completion else None,
            case.error,
        )
        for case in load_results(path).cases
    )


@pytest.mark.parametrize("retired", [False, True], ids=["primary-answers", "primary-retired"])
def test_record_then_replay_with_a_chain_makes_no_network_calls(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, retired: bool
) -> None:
    cases = qa_cases(4)
    scripted = chain_project(pytester, cases)
    scripted["models"][CANDIDATE]["retired"] = retired
    server = make_server(scripted)
    provider_env(server)
    chain = ["--llm-model=@chat", "--llm-fallback"]
    recorded = pytester.runpytest(*chain, "--llm-cache=record", "--llm-report=record.json")
    recorded.assert_outcomes(passed=4)
    answerer = FALLBACK if retired else CANDIDATE
    assert [r.requested_model for r in server.requests if r.status == 200].count(answerer) == 4
    if retired:  # the fallback's replies were stored, and the JSON says who answered each case
        assert {case[3] for case in outcomes(pytester.path / "record.json")} == {FALLBACK}
    server.reset_stats()
    replayed = pytester.runpytest(*chain, "--llm-cache=replay", "--llm-report=replay.json")
    replayed.assert_outcomes(passed=4)
    assert server.stats()["requests"] == 0
    # Without a preflight (replay makes none) a retired primary is looked up first: a miss.
    misses = 4 if retired else 0
    replayed.stdout.fnmatch_lines(
        [f"cache: candidate 4 hits / {misses} misses, judge 4 hits / 0 misses (.llmregress/cache)"]
    )
    assert outcomes(pytester.path / "replay.json") == outcomes(pytester.path / "record.json")
    assert replayed.ret == recorded.ret


# -- the lifecycle data says a model of the chain is retired --------------------------------------


def retire_in_lifecycle(pytester: pytest.Pytester, *models: str) -> None:
    """Project overrides that retire ``models`` (as a team does before a plugin release)."""
    overrides = "".join(
        f'[[tool.llmregress.lifecycle]]\nid = "{model}"\nretires_on = "2026-01-01"\n'
        for model in models
    )
    path = pytester.path / "pyproject.toml"
    path.write_text(path.read_text() + "\n" + overrides)


def output_of(result: pytest.RunResult) -> pytest.LineMatcher:
    return pytest.LineMatcher((result.stdout.str() + result.stderr.str()).splitlines())


def test_lifecycle_retired_primary_runs_through_the_chain_with_a_warning(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    scripted = chain_project(pytester, cases)
    scripted["models"][CANDIDATE]["retired"] = True  # as the lifecycle data says
    retire_in_lifecycle(pytester, CANDIDATE)
    server = make_server(scripted)
    provider_env(server)
    result = pytester.runpytest("--llm-model=@chat", "--llm-fallback", "--llm-report=run.json")
    result.assert_outcomes(passed=3)
    warning = (
        f"candidate: {CANDIDATE} retired on 2026-01-01; every request to it fails (HTTP 404); "
        f"--llm-fallback: the chain answers with anthropic:{FALLBACK}"
    )
    result.stdout.fnmatch_lines(
        [
            "llmregress: 1 model warning (*), listed in the summary",  # the header
            "  reason: the primary model answered no case: fallbacks answered all 3",
            f"answered by the chain: anthropic:{CANDIDATE} 0, anthropic:{FALLBACK} 3",
            f"  anthropic:{FALLBACK}: 3/3 passed (100.0%)",
            f"model warning: {warning}",
        ]
    )
    # The gate still says the primary was not tested: it answered no case.
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert {case[3] for case in outcomes(pytester.path / "run.json")} == {FALLBACK}
    assert {r.requested_model for r in server.requests if r.requested_model != JUDGE} == {FALLBACK}


def test_lifecycle_retired_fallback_only_warns(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    server = make_server(chain_project(pytester, cases))
    retire_in_lifecycle(pytester, FALLBACK)
    provider_env(server)
    result = pytester.runpytest("--llm-model=@chat", "--llm-fallback")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            f"model warning: fallback: {FALLBACK} retired on 2026-01-01; * "
            f"--llm-fallback: the chain answers with anthropic:{CANDIDATE}"
        ]
    )
    assert result.ret == pytest.ExitCode.OK


def test_lifecycle_retired_chain_stops_the_run_naming_every_model(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    server = make_server(chain_project(pytester, qa_cases(2)))
    retire_in_lifecycle(pytester, CANDIDATE, FALLBACK)
    provider_env(server)
    result = pytester.runpytest("--llm-model=@chat", "--llm-fallback")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output_of(result).fnmatch_lines(
        [
            "*pytest-llmregress: no case was run:",
            f"  candidate: {CANDIDATE} retired on 2026-01-01; every request to it fails (HTTP 404)",
            f"  fallback: {FALLBACK} retired on 2026-01-01; every request to it fails (HTTP 404)",
            f"  --llm-fallback: no model of the chain can answer (anthropic:{CANDIDATE}, "
            f"anthropic:{FALLBACK})",
        ]
    )
    assert server.requests == []


def test_lifecycle_retired_primary_without_fallback_stops_the_run(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    server = make_server(chain_project(pytester, qa_cases(2)))
    retire_in_lifecycle(pytester, CANDIDATE)
    provider_env(server)
    result = pytester.runpytest("--llm-model=@chat")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output_of(result).fnmatch_lines(
        [
            "*pytest-llmregress: no case was run:",
            f"  candidate: {CANDIDATE} retired on 2026-01-01; every request to it fails (HTTP 404)",
        ]
    )
    assert server.requests == []


def test_fallback_needs_a_configured_chain(pytester: pytest.Pytester) -> None:
    write_cases(pytester, "qa.jsonl", qa_cases(1))
    result = pytester.runpytest(f"--llm-model={CANDIDATE}", "--llm-fallback")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-fallback: no role in the model config has*"])
