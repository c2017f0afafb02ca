"""Every xdist ``--dist`` mode pays for each case exactly once, or is refused.

The server's request log is the proof: one candidate call and one judge call per case, and
one record per case in the results file, whatever mode spreads the work.
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from typing import Any

import pytest

from pytest_llmregress.verdict.results import load_results
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import MakeServer, PointEnv, model_args, qa_cases, scenario, write_cases

FILES = ("billing", "routing", "summaries")
PER_FILE = 7


@pytest.fixture
def suite(pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv) -> Any:
    cases = []
    for name in FILES:
        these = qa_cases(PER_FILE, prefix=name)
        write_cases(pytester, f"{name}.jsonl", these)
        cases += these
    # Plain tests beside the golden files: a class, and an xdist_group for --dist loadgroup.
    pytester.makepyfile(
        test_plain=textwrap.dedent(
            """
            import pytest

            class TestTogether:
                def test_one(self):
                    pass

                def test_two(self):
                    pass

            @pytest.mark.xdist_group("grouped")
            def test_grouped():
                pass
            """
        )
    )
    server = make_server(scenario(cases))
    provider_env(server)
    return server, cases


@pytest.mark.parametrize(
    "args",
    [
        ["-n2"],
        ["-n2", "--dist", "load"],
        ["-n2", "--dist", "loadfile"],
        ["-n3", "--dist", "loadfile"],
        ["-n2", "--dist", "loadscope"],
        ["-n2", "--dist", "loadgroup"],
        ["-n2", "--dist", "worksteal"],
        ["-n3", "--dist", "worksteal"],
    ],
    ids=lambda args: "".join(args).replace("--dist", "-"),
)
def test_each_case_is_called_once_in_every_mode(
    pytester: pytest.Pytester, suite: Any, args: list[str]
) -> None:
    server, cases = suite
    result = pytester.runpytest(*model_args("--llm-report=results.json"), *args)

    result.assert_outcomes(passed=len(cases) + 3)
    assert result.ret == pytest.ExitCode.OK
    candidate_calls = Counter(
        r.user_text for r in server.requests if r.requested_model == CANDIDATE
    )
    assert candidate_calls == Counter(c["user"] for c in cases)
    judge_calls = [r for r in server.requests if r.requested_model == JUDGE]
    assert len(judge_calls) == len(cases)
    run = load_results(pytester.path / "results.json")
    assert sorted(r.case_id for r in run.cases) == sorted(c["id"] for c in cases)
    document = json.loads((pytester.path / "results.json").read_text())
    assert len(document["cases"]) == len(cases)
    result.stdout.fnmatch_lines([f"PASSED: anthropic:{CANDIDATE} on {len(cases)} golden cases"])


def test_dist_each_is_refused_with_a_model(pytester: pytest.Pytester, suite: Any) -> None:
    server, _ = suite
    result = pytester.runpytest(*model_args(), "-n2", "--dist", "each")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--dist each runs every test on every worker*"])
    assert server.requests == []


def test_dist_each_without_a_model_runs_plain_tests(pytester: pytest.Pytester, suite: Any) -> None:
    server, cases = suite
    result = pytester.runpytest("-n2", "--dist", "each")

    # Every worker runs every test; golden items skip without a model.
    result.assert_outcomes(passed=2 * 3, skipped=2 * len(cases))
    assert server.requests == []


def test_under_load_each_worker_starts_only_its_own_unit(
    pytester: pytest.Pytester, suite: Any
) -> None:
    """``--dist load`` hands whole units to workers, so a worker submits its unit alone (the
    runner's one-answer-per-case board would hide a worker submitting everyone's cases)."""
    _, cases = suite
    pytester.makeconftest(
        """
        import json, pytest
        from pytest_llmregress.session import get_session

        @pytest.hookimpl(tryfirst=True)
        def pytest_sessionfinish(session):
            config = session.config
            if hasattr(config, "workerinput"):
                llm = get_session(config)
                sizes = [len(llm._groups[name]) for name in llm._submitted_groups]
                name = config.workerinput["workerid"] + ".json"
                (config.rootpath / name).write_text(json.dumps(sizes))
        """
    )
    result = pytester.runpytest(*model_args(), "-n2")
    result.assert_outcomes(passed=len(cases) + 3)
    submitted = [json.loads((pytester.path / f"gw{i}.json").read_text()) for i in (0, 1)]
    assert sorted(submitted) == [[len(cases) // 2], [len(cases) - len(cases) // 2]]
