"""Damaged state heals or is named: the response cache, resume journals, results files.

A damaged cache entry is a miss that the fresh answer overwrites (counted in the summary); a
cache file SQLite cannot use is moved aside and rebuilt with a warning naming both files; a
damaged journal line is skipped and counted, its case run again; a damaged results document
is an error naming the file and the line. Never an INTERNALERROR, never a traceback.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cli.compare import main as cli_main
from pytest_llmregress.engine.cache import CACHE_FILENAME, ResponseCache, cache_health_lines
from pytest_llmregress.providers.base import Completion, ProviderError
from pytest_llmregress.scoring.score import Score
from pytest_llmregress.testing.server import LocalProviderServer
from pytest_llmregress.verdict.results import (
    CaseResult,
    ResultsFileError,
    ResultsJournal,
    RunResult,
    load_results,
    read_results,
)
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]
PointEnv = Callable[[LocalProviderServer], None]


def reply(text: str = "a stored reply") -> Completion:
    return Completion(text=text, provider="anthropic", requested_model="m", resolved_model="m")


def damage_entry(path: Path, value: str | bytes, where: str = "key = 'k1'") -> None:
    db = sqlite3.connect(path)
    db.execute(f"UPDATE replies SET completion = ? WHERE {where}", (value,))
    db.commit()
    db.close()


def no_crash(output: str) -> None:
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output


# --- the cache, library level ------------------------------------------------------------------

DAMAGED_VALUES: dict[str, str | bytes] = {
    "cut short": '{"text": "a stored re',
    "not JSON": "<html>",
    "a list": "[1, 2]",
    "missing fields": '{"text": "a stored reply"}',
    "unknown field": json.dumps({**reply().to_dict(), "colour": "red"}),
    "wrong type": json.dumps({**reply().to_dict(), "text": 5}),
    "empty text": json.dumps({**reply().to_dict(), "text": "  "}),
    "not UTF-8": b'{"text": "\xff"}',
    "null": "null",
}


@pytest.mark.parametrize("value", DAMAGED_VALUES.values(), ids=list(DAMAGED_VALUES))
def test_a_damaged_entry_is_a_miss_that_the_fresh_answer_replaces(
    tmp_path: Path, value: str | bytes
) -> None:
    cache = ResponseCache(tmp_path)
    cache.put("k1", "judge", reply())
    cache.put("k2", "judge", reply("untouched"))
    cache.close()
    damage_entry(tmp_path / CACHE_FILENAME, value)

    cache = ResponseCache(tmp_path)
    assert cache.notices == []  # the file is fine: one entry is not
    assert cache.get("k1", "judge") is None
    second = cache.get("k2", "judge")
    assert second is not None
    assert second.text == "untouched"
    assert cache.stats_dict()["judge"] == {"hits": 1, "misses": 1, "writes": 0}
    assert cache.health()["damaged"] == 1
    assert cache.health()["replaced"] == 0
    cache.put("k1", "judge", reply("fresh"))
    assert cache.health()["replaced"] == 1
    assert cache_health_lines(cache.health()) == ["cache: 1 damaged entry replaced"]
    cache.close()

    healed = ResponseCache(tmp_path)
    hit = healed.get("k1", "judge")
    assert hit is not None
    assert hit.text == "fresh"
    assert hit.cached
    assert healed.health()["damaged"] == 0
    assert cache_health_lines(healed.health()) == []


def test_replay_cannot_replace_a_damaged_entry_so_the_call_names_the_cache(
    tmp_path: Path,
) -> None:
    cache = ResponseCache(tmp_path)
    cache.put("k1", "candidate", reply())
    cache.close()
    damage_entry(tmp_path / CACHE_FILENAME, '{"text": "a st')
    replay = ResponseCache(tmp_path, replay=True)
    with pytest.raises(ProviderError) as info:
        replay.get("k1", "candidate")
    message = str(info.value)
    assert str(tmp_path / CACHE_FILENAME) in message
    assert "damaged" in message
    assert "--llm-cache=replay" in message
    assert info.value.kind == "bad_response"  # not a miss: a chain does not fall through it
    lines = cache_health_lines(replay.health())
    assert lines
    assert lines[0].startswith("cache: 1 damaged entry found in ")
    assert "0 replaced" in lines[0]


def truncated_database(path: Path) -> bytes:
    cache = ResponseCache(path.parent)
    for number in range(200):
        cache.put(f"k{number}", "judge", reply("x" * 500))
    cache.close()
    data = path.read_bytes()
    return data[: len(data) // 2]


def wrong_schema(path: Path) -> bytes:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE replies (key TEXT, value TEXT)")
    db.commit()
    db.close()
    return path.read_bytes()


UNUSABLE_FILES: dict[str, Callable[[Path], bytes | None]] = {
    "garbage": lambda path: b"not a database, just bytes\x00\xff" * 40,
    "truncated": truncated_database,
    "wrong schema": wrong_schema,
    "a directory": lambda path: None,
}


@pytest.mark.parametrize("make", UNUSABLE_FILES.values(), ids=list(UNUSABLE_FILES))
def test_an_unusable_cache_file_is_moved_aside_and_rebuilt(
    tmp_path: Path, make: Callable[[Path], bytes | None]
) -> None:
    path = tmp_path / CACHE_FILENAME
    content = make(path)
    if content is None:
        path.mkdir()
        (path / "inside").write_text("kept")
    else:
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        path.write_bytes(content)

    cache = ResponseCache(tmp_path)

    assert cache.disabled is None
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith(CACHE_FILENAME + ".damaged-")]
    [notice] = cache.notices
    assert str(path) in notice
    assert str(aside) in notice
    if content is None:
        assert (aside / "inside").read_text() == "kept"
    else:
        assert aside.read_bytes() == content  # kept as it was, for a look
    cache.put("k", "judge", reply("new"))
    hit = ResponseCache(tmp_path).get("k", "judge")
    assert hit is not None
    assert hit.text == "new"
    assert ResponseCache(tmp_path).notices == []  # rebuilt once, fine from then on


def test_runs_opening_one_damaged_cache_at_once_move_it_aside_once(tmp_path: Path) -> None:
    (tmp_path / CACHE_FILENAME).write_bytes(b"garbage" * 100)
    start = threading.Barrier(4)
    caches: list[ResponseCache] = []
    lock = threading.Lock()

    def open_cache() -> None:
        start.wait()
        cache = ResponseCache(tmp_path)
        with lock:
            caches.append(cache)

    threads = [threading.Thread(target=open_cache) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len([p for p in tmp_path.iterdir() if ".damaged-" in p.name]) == 1
    assert sum(len(cache.notices) for cache in caches) == 1
    caches[0].put("shared", "judge", reply("from one run"))
    for cache in caches[1:]:
        hit = cache.get("shared", "judge")
        assert hit is not None
        assert hit.text == "from one run"


def test_a_cache_that_cannot_be_made_leaves_the_run_without_one(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.write_text("a file where the cache folder should be")
    cache = ResponseCache(folder, replay=True)
    assert cache.disabled is not None
    [notice] = cache.notices
    assert str(folder) in notice
    assert "caches nothing and replays nothing" in notice
    cache.put("k", "judge", reply())
    assert cache.get("k", "judge") is None  # a miss, never a crash


# --- journals and documents, library level ------------------------------------------------------


def case(number: int, outcome: str = "passed") -> CaseResult:
    return CaseResult(
        case_id=f"case-{number:03d}",
        nodeid=f"golden_cases/qa.jsonl::case-{number:03d}",
        path="golden_cases/qa.jsonl",
        line=number + 1,
        outcome=outcome,  # type: ignore[arg-type]
        threshold=0.5,
        scores=(Score("judge", 0.9, True, "fine", 0.5, JUDGE),),
        output=f"answer {number}",
        completion=reply(f"answer {number}"),
    )


def journal_lines(cases: list[CaseResult]) -> list[bytes]:
    header = {"kind": "header", "version": 1, "metadata": {"candidate": "anthropic:m"}}
    lines = [json.dumps(header).encode()]
    lines += [json.dumps({"kind": "case", "case": c.to_dict()}).encode() for c in cases]
    return lines


DAMAGED_LINES: dict[str, bytes] = {
    "not an object": b'["kind", "case"]',
    "a short record": b'{"kind": "case", "case": {"case_id": "case-001"}}',
    "no case": b'{"kind": "case"}',
    "not UTF-8": json.dumps({"kind": "case", "case": case(1).to_dict()}).encode()[:-20]
    + b"\xff"
    + json.dumps({"kind": "case", "case": case(1).to_dict()}).encode()[-19:],
    "not JSON": b"{'kind': 'case'}",
    "another kind": b'{"kind": "footer"}',
    "bad scores": json.dumps(
        {"kind": "case", "case": {**case(1).to_dict(), "scores": [{"value": 1}]}}
    ).encode(),
}


@pytest.mark.parametrize("bad", DAMAGED_LINES.values(), ids=list(DAMAGED_LINES))
def test_a_damaged_journal_line_is_skipped_and_counted(tmp_path: Path, bad: bytes) -> None:
    lines = journal_lines([case(0), case(1), case(2)])
    lines[2] = bad  # case-001's line
    journal = tmp_path / "run.json.partial" / "main.jsonl"
    journal.parent.mkdir()
    journal.write_bytes(b"\n".join(lines) + b"\n")

    run, skipped = read_results(tmp_path / "run.json")

    assert [c.case_id for c in run.cases] == ["case-000", "case-002"]
    assert run.metadata == {"candidate": "anthropic:m"}
    [lines_skipped] = skipped
    assert lines_skipped.path == journal
    assert lines_skipped.lines == (3,)
    assert lines_skipped.describe().startswith(
        f"skipped 1 damaged line in {journal} (first at line 3: "
    )
    assert [c.case_id for c in load_results(tmp_path / "run.json").cases] == [
        "case-000",
        "case-002",
    ]


def test_skipped_lines_are_counted_per_journal_with_the_first(tmp_path: Path) -> None:
    lines = journal_lines([case(n) for n in range(6)])
    lines[3], lines[6] = DAMAGED_LINES["not an object"], DAMAGED_LINES["not UTF-8"]
    journal = tmp_path / "run.json.partial" / "gw0.jsonl"
    journal.parent.mkdir()
    journal.write_bytes(b"\n".join(lines) + b"\n")
    run, [skipped] = read_results(tmp_path / "run.json")
    assert len(run.cases) == 4
    assert skipped.describe().startswith(
        f"skipped 2 damaged lines in {journal} (first at line 4: expected a journal record"
    )


def test_a_last_line_cut_short_is_unfinished_not_damaged(tmp_path: Path) -> None:
    lines = journal_lines([case(0), case(1)])
    journal = tmp_path / "run.json.partial" / "main.jsonl"
    journal.parent.mkdir()
    journal.write_bytes(b"\n".join(lines) + b"\n" + lines[2][:40])  # killed mid-write
    run, skipped = read_results(tmp_path / "run.json")
    assert [c.case_id for c in run.cases] == ["case-000", "case-001"]
    assert skipped == []
    # Resuming appends to the same journal: its header starts a line of its own.
    ResultsJournal(tmp_path / "run.json", "main", {"candidate": "anthropic:m"}).close()
    assert journal.read_bytes().endswith(b"\n" + lines[0] + b"\n")
    run, skipped = read_results(tmp_path / "run.json")
    assert len(run.cases) == 2
    assert [s.lines for s in skipped] == [(4,)]  # the half line is now a whole damaged one


def test_a_file_that_is_no_journal_is_refused_naming_it(tmp_path: Path) -> None:
    golden = tmp_path / "cases.jsonl"
    golden.write_text('{"id": "a", "user": "hi"}\n{"id": "b", "user": "ho"}\n')
    with pytest.raises(ResultsFileError, match=rf"^{golden}:1: not a results journal"):
        load_results(golden)


def test_a_journal_of_another_version_is_refused_naming_its_line(tmp_path: Path) -> None:
    journal = tmp_path / "run.json.partial" / "main.jsonl"
    journal.parent.mkdir()
    journal.write_text('{"kind": "header", "version": 7, "metadata": {}}\n')
    with pytest.raises(ResultsFileError, match=rf"^{journal}:1: results version 7 is not 1"):
        load_results(tmp_path / "run.json")


def document_text() -> str:
    run = RunResult({"candidate": "anthropic:m"}, [case(0), case(1, "failed"), case(2)])
    return json.dumps(run.to_dict(), indent=2) + "\n"


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def bad_documents() -> dict[str, tuple[bytes, str]]:
    """name -> (file content, the message after 'PATH')."""
    text = document_text()
    cut = text[: len(text) // 2]
    cut_end = cut.rstrip()
    outcome = text.replace('"outcome": "failed"', '"outcome": "flaky"')
    short = json.loads(text)
    short["cases"][2] = {"case_id": "case-002"}
    short_text = json.dumps(short, indent=2)
    byte_at = text.index("answer 1")
    case_1 = line_of(outcome, '"case_id": "case-001"') - 1  # the line of its opening brace
    case_2 = line_of(short_text, '"case_id": "case-002"') - 1
    cut_line, cut_column = cut_end.count("\n") + 1, len(cut_end) - cut_end.rfind("\n")
    return {
        "cut short": (
            cut.encode(),
            f":{cut_line}:{cut_column}: the file ends in the middle of its JSON (cut short?)",
        ),
        "empty": (b"", ": the file is empty; expected a results document (JSON)"),
        "not UTF-8": (
            text[:byte_at].encode() + b"\xff" + text[byte_at + 1 :].encode(),
            f":{line_of(text, 'answer 1')}:",
        ),
        "not JSON": (b"version: 1\n", ":1:1: not valid JSON (Expecting value)"),
        "a list": (b"[]", ": expected a results document (a JSON object"),
        "a bad outcome": (
            outcome.encode(),
            f":{case_1}: cases[1]: outcome 'flaky' is not one of passed, failed, error",
        ),
        "a short case": (
            short_text.encode(),
            f":{case_2}: cases[2]: a case result without nodeid, path, line, outcome, threshold",
        ),
        "cases not a list": (b'{"version": 1, "cases": {}}', ": cases: expected a list"),
    }


BAD_DOCUMENTS = bad_documents()


@pytest.mark.parametrize("name", list(BAD_DOCUMENTS))
def test_a_damaged_results_document_names_the_file_and_line(tmp_path: Path, name: str) -> None:
    content, expected = BAD_DOCUMENTS[name]
    path = tmp_path / "results.json"
    path.write_bytes(content)
    with pytest.raises(ResultsFileError) as info:
        load_results(path)
    assert str(info.value).startswith(f"{path}{expected}")


def test_llmregress_compare_refuses_a_damaged_file_with_its_name_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    good.write_text(document_text())
    cut = tmp_path / "cut.json"
    cut.write_text(document_text()[:300])
    assert cli_main(["compare", str(good), str(cut)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"llmregress: cannot read results: {cut}:")
    assert "cut short" in err
    no_crash(err)
    assert cli_main(["compare", "--attribute", str(good), str(good), str(good), str(cut)]) == 2
    assert f"{cut}:" in capsys.readouterr().err


def test_llmregress_compare_skips_damaged_journal_lines_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.json"
    good.write_text(document_text())
    lines = journal_lines([case(0), case(1), case(2)])
    lines[2] = DAMAGED_LINES["a short record"]
    journal = tmp_path / "partial.json.partial" / "main.jsonl"
    journal.parent.mkdir()
    journal.write_bytes(b"\n".join(lines) + b"\n")
    assert cli_main(["compare", str(good), str(tmp_path / "partial.json")]) == 0
    err = capsys.readouterr().err
    assert f"llmregress: note: skipped 1 damaged line in {journal} (first at line 3:" in err
    assert cli_main(["history", str(tmp_path)]) == 0
    assert "skipped 1 damaged line" in capsys.readouterr().err


# --- end to end: pytest against the local server ------------------------------------------------


def cache_file(pytester: pytest.Pytester) -> Path:
    return pytester.path / ".llmregress" / "cache" / CACHE_FILENAME


def calls(server: LocalProviderServer, model: str) -> int:
    return sum(1 for r in server.requests if r.requested_model == model)


def test_a_damaged_judge_verdict_heals_with_default_settings(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, run_mode: list[str]
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    pytester.runpytest(*model_args(), *run_mode).assert_outcomes(passed=3)
    damage_entry(
        cache_file(pytester),
        '{"text": "{\\"score\\": 0.9',
        "rowid = (SELECT min(rowid) FROM replies WHERE kind = 'judge')",
    )

    server.reset_stats()
    healing = pytester.runpytest(*model_args(), *run_mode)
    healing.assert_outcomes(passed=3)
    assert healing.ret == pytest.ExitCode.OK
    assert calls(server, JUDGE) == 1  # the damaged verdict only, asked again
    healing.stdout.fnmatch_lines(["cache: 1 damaged entry replaced"])
    no_crash(healing.stdout.str() + healing.stderr.str())

    server.reset_stats()
    healed = pytester.runpytest(*model_args(), *run_mode)
    healed.assert_outcomes(passed=3)
    assert calls(server, JUDGE) == 0
    assert "damaged entr" not in healed.stdout.str()


def test_replay_names_the_cache_for_a_damaged_reply_and_calls_nothing(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    pytester.runpytest(*model_args("--llm-cache=record")).assert_outcomes(passed=3)
    damage_entry(
        cache_file(pytester),
        "[]",
        "rowid = (SELECT min(rowid) FROM replies WHERE kind = 'candidate')",
    )
    server.reset_stats()
    replayed = pytester.runpytest(*model_args("--llm-cache=replay"))
    replayed.assert_outcomes(passed=2, errors=1)
    assert server.requests == []
    replayed.stdout.fnmatch_lines(
        [
            f"*the cached reply for this request in {cache_file(pytester)} is damaged*",
            "cache: 1 damaged entry found in *, 0 replaced*",
        ]
    )
    no_crash(replayed.stdout.str())


@pytest.mark.parametrize("damage", ["garbage", "a directory"])
def test_a_damaged_cache_file_is_set_aside_and_the_session_runs(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv, damage: str
) -> None:
    cases = qa_cases(3)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    path = cache_file(pytester)
    path.parent.mkdir(parents=True)
    if damage == "garbage":
        path.write_bytes(b"\x00garbage\xff" * 500)
    else:
        path.mkdir()

    result = pytester.runpytest(*model_args())

    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK
    [aside] = [p for p in path.parent.iterdir() if p.name.startswith(CACHE_FILENAME + ".damaged-")]
    result.stdout.fnmatch_lines(
        [f"*LLMRegressWarning: the response cache {path} was damaged (*): it was moved to {aside}*"]
    )
    no_crash(result.stdout.str() + result.stderr.str())
    server.reset_stats()
    again = pytester.runpytest(*model_args())
    again.assert_outcomes(passed=3)
    assert calls(server, JUDGE) == 0  # the new cache holds this run's verdicts
    assert "LLMRegressWarning" not in again.stdout.str()


def test_resume_skips_damaged_journal_lines_and_runs_their_cases_again(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(6)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    args = model_args("--llm-report=run.json", "--llm-judge-cache=off")
    pytester.runpytest(*args).assert_outcomes(passed=6)
    document = json.loads((pytester.path / "run.json").read_text())
    # What an interrupted run leaves: the journal, no document; three of its lines damaged.
    header = {"kind": "header", "version": 1, "metadata": document["metadata"]}
    lines = [json.dumps(header).encode()]
    lines += [json.dumps({"kind": "case", "case": c}).encode() for c in document["cases"]]
    lines[2] = b"[" + lines[2] + b"]"  # not an object
    lines[4] = json.dumps({"kind": "case", "case": {"case_id": "case-003"}}).encode()  # short
    lines[5] = lines[5].replace(b"question", b"qu\xffstion", 1)  # one non-UTF-8 byte
    journal = pytester.path / "run.json.partial" / "main.jsonl"
    journal.parent.mkdir()
    journal.write_bytes(b"\n".join(lines) + b"\n")
    (pytester.path / "run.json").unlink()
    damaged = {document["cases"][n]["case_id"] for n in (1, 3, 4)}

    server.reset_stats()
    resumed = pytester.runpytest(*model_args("--llm-resume=run.json", "--llm-judge-cache=off"))

    resumed.assert_outcomes(passed=6)
    assert resumed.ret == pytest.ExitCode.OK
    asked = {r.user_text for r in server.requests if r.requested_model == CANDIDATE}
    assert asked == {c["user"] for c in cases if c["id"] in damaged}
    resumed.stdout.fnmatch_lines(
        [
            f"resume: skipped 3 damaged lines in {journal} (first at line 3: *); their cases "
            f"ran again",
            "resumed: 3 cases taken from the earlier run, not called again",
        ]
    )
    no_crash(resumed.stdout.str() + resumed.stderr.str())
    final = load_results(pytester.path / "run.json")
    assert sorted(c.case_id for c in final.cases) == [c["id"] for c in cases]
    assert not journal.exists()


def test_resume_from_a_damaged_document_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    (pytester.path / "run.json").write_text(document_text()[:500])
    server.reset_stats()
    result = pytester.runpytest(*model_args("--llm-resume=run.json"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: pytest-llmregress: --llm-resume: {pytester.path / 'run.json'}:*:*: the file "
            f"ends in the middle of its JSON (cut short?)*"
        ]
    )
    no_crash(result.stdout.str() + result.stderr.str())
    assert server.requests == []


def test_a_damaged_baseline_is_a_usage_error_before_any_call(
    pytester: pytest.Pytester, make_server: MakeServer, provider_env: PointEnv
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    server = make_server(scenario(cases))
    provider_env(server)
    text = document_text().replace('"outcome": "failed"', '"outcome": 3')
    (pytester.path / "prod.json").write_text(text)
    result = pytester.runpytest(*model_args("--llm-baseline=prod.json"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = line_of(text, '"case_id": "case-001"') - 1
    result.stderr.fnmatch_lines(
        [
            f"ERROR: pytest-llmregress: --llm-baseline: {pytester.path / 'prod.json'}:{line}: "
            f"cases[1]: outcome 3 is not one of passed, failed, error"
        ]
    )
    no_crash(result.stdout.str() + result.stderr.str())
    assert calls(server, CANDIDATE) == 0
