"""Sharded CI matrices, one verdict: ``--llm-shard=I/N`` and ``llmregress merge``.

Real runs of the plugin against the local provider server over real HTTP: N shards and one
single run of the same cases, merged and compared.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cli.dispatch import main as llmregress
from pytest_llmregress.collect.shard import shard_of_case
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import load_results
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import answers, drifted, model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]
OTHER = "claude-sonnet-5"  # another model the local server answers as


def run_shards(
    pytester: pytest.Pytester, count: int, *extra: str, folder: str = "shards"
) -> list[pytest.RunResult]:
    """Run shard 1..count of the golden cases, each writing ``folder/I.json``."""
    return [
        pytester.runpytest(
            *model_args(f"--llm-shard={index}/{count}", f"--llm-report={folder}/{index}.json"),
            *extra,
        )
        for index in range(1, count + 1)
    ]


def merge(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """``llmregress merge ARGS`` in the project folder: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = llmregress(["merge", *args])
    out, err = capsys.readouterr()
    return status, out, err


def shard_files(pytester: pytest.Pytester, count: int, folder: str = "shards") -> list[str]:
    return [str(pytester.path / folder / f"{index}.json") for index in range(1, count + 1)]


def candidate_calls(server: LocalProviderServer) -> Counter[str]:
    return Counter(r.user_text for r in server.requests if r.requested_model == CANDIDATE)


def test_shards_are_chosen_by_a_stable_hash_of_the_case_id() -> None:
    # Pinned: shards of a run cut by another version (or machine, or Python) must agree.
    assert [shard_of_case(f"case-{i:03d}", 3) for i in range(8)] == [1, 3, 1, 2, 1, 1, 1, 2]
    assert shard_of_case("only", 1) == 1
    counts = Counter(shard_of_case(f"id-{i}", 4) for i in range(400))
    assert sorted(counts) == [1, 2, 3, 4]
    assert min(counts.values()) > 70  # each shard gets its share


@pytest.mark.parametrize(
    ("min_pass_rate", "repeat", "shard_mode", "expected_status"),
    [("0.7", 1, [], 0), ("0.9", 1, [], 1), ("0.7", 1, ["-n2"], 0), ("0.7", 2, [], 0)],
    ids=["passing", "failing-gate-exits-1", "shards-under-xdist", "repeated-bootstrap"],
)
def test_three_shards_merge_to_the_verdict_of_one_run(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    capsys: pytest.CaptureFixture[str],
    min_pass_rate: str,
    repeat: int,
    shard_mode: list[str],
    expected_status: int,
) -> None:
    cases, scripted = drifted(30, bad=6)
    write_cases(pytester, "qa.jsonl", cases)
    gate = (f"--llm-min-pass-rate={min_pass_rate}", f"--llm-repeat={repeat}")

    single_server = make_server(scripted)
    provider_env(single_server)
    single = pytester.runpytest(
        *model_args(*gate, "--llm-report=single.json", "--llm-markdown=single.md")
    )
    single.assert_outcomes(passed=24, failed=6)

    shard_server = make_server(scripted)
    provider_env(shard_server)
    shards = run_shards(pytester, 3, *gate, *shard_mode)

    # Each shard ran its own cases and deselected the others'; together, each case once.
    ran = [s.parseoutcomes().get("passed", 0) + s.parseoutcomes().get("failed", 0) for s in shards]
    assert sum(ran) == 30
    assert all(ran)
    if not shard_mode:  # under xdist the workers deselect, not the controller
        assert [s.parseoutcomes()["deselected"] for s in shards] == [30 - n for n in ran]
    for index, (shard, count) in enumerate(zip(shards, ran, strict=True), 1):
        shard.stdout.fnmatch_lines([f"*: anthropic:{CANDIDATE} on {count} golden cases"])
        document = load_results(pytester.path / "shards" / f"{index}.json")
        assert document.metadata["settings"]["shard"] == f"{index}/3"
        assert document.metadata["missing"] == []
        assert {shard_of_case(c.case_id, 3) for c in document.cases} == {index}
    calls = candidate_calls(shard_server)
    assert sorted(calls) == sorted(c["user"] for c in cases)
    assert set(calls.values()) == {repeat}
    assert sum(1 for r in shard_server.requests if r.requested_model == JUDGE) == 30 * repeat

    status, out, err = merge(
        pytester,
        capsys,
        *shard_files(pytester, 3),
        "-o",
        "merged.json",
        "--markdown",
        "merged.md",
        "--html",
        "merged.html",
    )
    assert (status, err) == (expected_status, "")
    assert expected_status == single.ret
    assert "3 shards, 30 cases, each run once -> merged.json" in out
    word = "PASSED" if expected_status == 0 else "FAILED"
    assert f"{word}: anthropic:{CANDIDATE} on 30 golden cases" in out

    merged = load_results(pytester.path / "merged.json")
    alone = load_results(pytester.path / "single.json")
    assert merged.metadata["verdict"] == alone.metadata["verdict"]
    assert merged.metadata["verdict"]["passed"] == 24
    assert merged.metadata["missing"] == alone.metadata["missing"] == []
    assert merged.metadata["settings"]["shard"] is None
    assert [s["shard"] for s in merged.metadata["merged_shards"]] == ["1/3", "2/3", "3/3"]
    assert [c.nodeid for c in merged.cases] == [c.nodeid for c in alone.cases]
    assert [c.outcome for c in merged.cases] == [c.outcome for c in alone.cases]
    merged_md = (pytester.path / "merged.md").read_text()
    assert merged_md == (pytester.path / "single.md").read_text()
    assert ("✅" if expected_status == 0 else "❌") in merged_md.splitlines()[0]
    page = (pytester.path / "merged.html").read_text()
    assert "<html" in page
    assert "case-029" in page


def test_merged_comparison_is_the_single_runs(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The compare model's pairs, and a baseline file, compare as they do in one run."""
    cases = [{**case, "scorers": ["exact"]} for case in qa_cases(24)]
    write_cases(pytester, "qa.jsonl", cases)
    other = OTHER
    scripted = scenario(cases)
    scripted["models"][other] = {
        "answers": scripted["models"][CANDIDATE]["answers"],
        "drift": {"share": 0.3, "seed": 3, "reply": "Something else entirely."},
    }
    server = make_server(scripted)
    provider_env(server)
    paired = (f"--llm-compare-model={other}", "--llm-max-regression=0.5")
    single = pytester.runpytest(*model_args(*paired, "--llm-report=single.json"))
    assert single.ret == 0
    baseline = pytester.runpytest(
        f"--llm-model={other}", "--llm-report=baseline.json", "--llm-min-pass-rate=0"
    )
    assert baseline.ret == 0
    against = pytester.runpytest(
        *model_args(
            "--llm-baseline=baseline.json", "--llm-max-regression=0.01", "--llm-report=against.json"
        )
    )
    run_shards(pytester, 3, *paired)

    status, _, err = merge(pytester, capsys, *shard_files(pytester, 3), "-o", "merged.json")
    assert (status, err) == (0, "")
    merged = load_results(pytester.path / "merged.json")
    alone = load_results(pytester.path / "single.json")
    for key in ("verdict", "comparison"):
        assert merged.metadata[key] == alone.metadata[key]
    assert merged.metadata["comparison"]["paired_cases"] == 24
    assert len(merged.compare_cases) == 24

    # --baseline gives the comparison --llm-baseline gives, and its regression fails the gate.
    status, out, _ = merge(
        pytester,
        capsys,
        *shard_files(pytester, 3),
        "-o",
        "merged_b.json",
        "--baseline",
        "baseline.json",
        "--max-regression=0.01",
    )
    versus = load_results(pytester.path / "merged_b.json").metadata["comparison"]
    assert versus is not None
    reference = load_results(pytester.path / "against.json").metadata["comparison"]
    assert versus == reference
    assert versus["verdict"] == "improvement"
    assert status == against.ret == 0
    assert f"IMPROVEMENT: anthropic:{CANDIDATE} against anthropic:{OTHER}" in out


def test_a_case_keeps_its_shard_when_other_cases_are_added(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(15)
    more = qa_cases(8, prefix="extra")
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases + more)))

    def shard_ids(name: str) -> set[str]:
        pytester.runpytest(*model_args("--llm-shard=2/3", f"--llm-report={name}"))
        return {c.case_id for c in load_results(pytester.path / name).cases}

    before = shard_ids("before.json")
    assert before == {c["id"] for c in cases if shard_of_case(c["id"], 3) == 2}
    # New cases before the old ones in the same file, and a new file that sorts first.
    write_cases(pytester, "qa.jsonl", more[:4] + cases)
    write_cases(pytester, "a_first.jsonl", more[4:])
    after = shard_ids("after.json")
    assert before <= after
    assert after - before == {c["id"] for c in more if shard_of_case(c["id"], 3) == 2}


@pytest.mark.parametrize("dist", ["load", "loadfile", "loadscope", "loadgroup", "worksteal"])
def test_workers_agree_on_the_shard_in_every_dist_mode(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, dist: str
) -> None:
    cases = qa_cases(12)
    write_cases(pytester, "qa.jsonl", cases[:6])
    write_cases(pytester, "qb.jsonl", cases[6:])
    server = make_server(scenario(cases))
    provider_env(server)
    mine = sorted(c["user"] for c in cases if shard_of_case(c["id"], 2) == 1)

    result = pytester.runpytest(
        *model_args("--llm-shard=1/2", "--llm-report=s.json"), "-n2", f"--dist={dist}"
    )

    result.assert_outcomes(passed=len(mine))
    assert result.ret == 0
    assert sorted(candidate_calls(server).elements()) == mine
    document = load_results(pytester.path / "s.json")
    assert document.metadata["missing"] == []
    assert sorted(c.case_id for c in document.cases) == sorted(
        c["id"] for c in cases if shard_of_case(c["id"], 2) == 1
    )


def test_llm_fixture_tests_are_sharded_by_case_id_and_other_tests_run_in_every_shard(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = qa_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    pytester.makepyfile(
        test_app="""
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_ask(llm, n):
            assert llm.complete(user=f"question number {n} about case")

        def test_plain():
            pass
        """
    )
    server = make_server(scenario(cases))
    provider_env(server)
    shards = run_shards(pytester, 2)
    # Every golden case and every llm test once; the plain test in both shards.
    assert sum(s.parseoutcomes()["passed"] for s in shards) == 6 + 6 + 2
    assert set(candidate_calls(server).values()) == {2}  # a golden case and an llm test each

    status, _out, err = merge(pytester, capsys, *shard_files(pytester, 2), "-o", "merged.json")
    assert (status, err) == (0, "")
    merged = load_results(pytester.path / "merged.json")
    ids = sorted(c.nodeid for c in merged.cases)
    assert len(ids) == 12
    assert len(set(ids)) == 12
    assert "test_app.py::test_ask[3]" in ids


@pytest.fixture
def three_shards(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> list[str]:
    """Shards 1..3 of a run of 12 passing cases, in ``shards/``."""
    cases = qa_cases(12)
    write_cases(pytester, "qa.jsonl", cases)
    scripted = scenario(cases)
    scripted["models"][OTHER] = {"answers": answers(cases)}
    provider_env(make_server(scripted))
    for result in run_shards(pytester, 3):
        assert result.ret == 0
    return shard_files(pytester, 3)


def test_merge_refuses_a_shard_given_twice_or_missing(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], three_shards: list[str]
) -> None:
    one, two, three = three_shards
    copy = str(pytester.path / "copy_of_2.json")
    shutil.copy(two, copy)

    status, out, err = merge(pytester, capsys, one, two, three, copy, "-o", "m.json")
    assert status == 2
    assert out == ""
    assert f"shard 2/3 is given 2 times: {two}, {copy}" in err
    assert "case golden_cases/qa.jsonl::case-" in err
    assert "ran more than once" in err
    assert not (pytester.path / "m.json").exists()

    status, _, err = merge(pytester, capsys, one, three, "-o", "m.json")
    assert status == 2
    assert "shard 2/3 missing: every shard of the run must be given" in err
    assert not (pytester.path / "m.json").exists()


def test_merge_refuses_shards_of_different_runs(
    pytester: pytest.Pytester,
    capsys: pytest.CaptureFixture[str],
    three_shards: list[str],
) -> None:
    one, two, three = three_shards
    # Another gate setting: refused, unless merge is told which gate to apply.
    other = pytester.runpytest(
        *model_args("--llm-shard=3/3", "--llm-report=other/3.json", "--llm-min-pass-rate=0.5")
    )
    assert other.ret == 0
    odd = str(pytester.path / "other" / "3.json")
    status, _, err = merge(pytester, capsys, one, two, odd, "-o", "m.json")
    assert status == 2
    assert "settings.min_pass_rate (or give it to merge) differs between the shards" in err
    assert f"{odd} (3/3): 0.5" in err
    status, _, err = merge(pytester, capsys, one, two, odd, "-o", "m.json", "--min-pass-rate=1")
    assert (status, err) == (0, "")
    (pytester.path / "m.json").unlink()

    # Cut into another number of shards.
    pytester.runpytest(*model_args("--llm-shard=2/4", "--llm-report=four/2.json"))
    quarter = str(pytester.path / "four" / "2.json")
    status, _, err = merge(pytester, capsys, one, quarter, three, "-o", "m.json")
    assert status == 2
    assert "not cut into the same number of shards" in err
    assert f"{quarter} is shard 2/4" in err

    # Another model under test.
    pytester.runpytest(
        f"--llm-model={OTHER}",
        f"--llm-judge-model={JUDGE}",
        "--llm-shard=1/3",
        "--llm-report=haiku/1.json",
    )
    haiku = str(pytester.path / "haiku" / "1.json")
    status, _, err = merge(pytester, capsys, haiku, two, three, "-o", "m.json")
    assert status == 2
    assert "metadata.candidate differs between the shards" in err
    assert OTHER in err

    # Other golden files: a shard whose cases do not belong to it.
    moved = pytester.path / "moved.json"
    document = json.loads(Path(one).read_text())
    document["metadata"]["settings"]["shard"] = "2/3"
    moved.write_text(json.dumps(document))
    status, _, err = merge(pytester, capsys, str(moved), two, three, "-o", "m.json")
    assert status == 2
    assert f"is in {moved} (shard 2/3) but its id belongs to shard 1/3" in err

    # A run without --llm-shard is not a shard.
    pytester.runpytest(*model_args("--llm-report=whole.json"))
    status, _, err = merge(pytester, capsys, str(pytester.path / "whole.json"), "-o", "m.json")
    assert status == 2
    assert "not a shard's results: its run had no --llm-shard=I/N" in err
    assert not (pytester.path / "m.json").exists()


def test_a_golden_file_the_shards_could_not_load_fails_the_merged_gate(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = qa_cases(8)
    write_cases(pytester, "good.jsonl", cases)
    bad = pytester.path / "golden_cases" / "bad.jsonl"
    bad.write_text('{"id": "ok-1", "user": "hi", "reference": "x"}\n{"id": "oops", "user": 5}\n')
    provider_env(make_server(scenario(cases)))
    single = pytester.runpytest(*model_args("--llm-report=single.json"))
    assert single.ret == pytest.ExitCode.TESTS_FAILED
    for shard in run_shards(pytester, 2):
        assert shard.ret == pytest.ExitCode.TESTS_FAILED

    status, out, err = merge(pytester, capsys, *shard_files(pytester, 2), "-o", "merged.json")

    assert (status, err) == (1, "")
    assert "golden file could not be loaded" in out
    merged = load_results(pytester.path / "merged.json").metadata
    alone = load_results(pytester.path / "single.json").metadata
    assert merged["verdict"] == alone["verdict"]
    assert merged["broken_golden_files"] == ["golden_cases/bad.jsonl"]


def test_a_shard_that_selected_no_case_still_counts_as_given(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    provider_env: PointEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = qa_cases(2)  # case-000 is shard 1 of 3, case-001 shard 3: shard 2 selects none
    assert [shard_of_case(c["id"], 3) for c in cases] == [1, 3]
    write_cases(pytester, "qa.jsonl", cases)
    provider_env(make_server(scenario(cases)))
    shards = run_shards(pytester, 3)
    assert shards[1].ret == pytest.ExitCode.NO_TESTS_COLLECTED
    shards[1].stdout.fnmatch_lines(["collected 2 items / 2 deselected / 0 selected"])

    status, out, err = merge(pytester, capsys, *shard_files(pytester, 3), "-o", "merged.json")

    assert (status, err) == (0, "")
    assert "3 shards, 2 cases, each run once" in out
    merged = load_results(pytester.path / "merged.json").metadata
    assert [s["cases"] for s in merged["merged_shards"]] == [1, 0, 1]
